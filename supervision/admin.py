"""Admin for the supervision tables: the runtime owns most values, admins own the policies."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from mistersmith.live.admin import DatabaseFilledOnAddMixin, RuntimeOwnedMixin
from mistersmith.web.admin_scale import LargeTableAdmin, LightChangelistMixin
from mistersmith.web.forms import LOADED_VALUES_FIELD, STORABLE_JSON, ConcurrentEditGuard, IndexedTextLimitMixin
from mistersmith.web.links import reverse_with_id
from supervision import backtest, cascade, history, policies, services
from supervision.models import (
    SupervisionChildState,
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)
from supervision.policy_form import PolicyForm, with_old_and_new
from supervision.policy_lint import lint_saved
from supervision.views import moments
from supervision.views import restart as views
from supervision.views.tree import node_tree_url

LATEST_ON_NODE_PAGE = 10
BULK_RESTART_LIMIT = 100
BULK_DELETE_LIMIT = 100  # selected nodes (each may carry a subtree of any size)

# The tables a node's deletion cascades to, with the permission that deleting their rows needs.
CASCADE_PERMISSIONS = [
    ("policies", "supervision.delete_supervisionpolicy", "supervision policies"),
    ("failures", "supervision.delete_supervisionfailure", "supervision failures"),
    ("restarts", "supervision.delete_supervisionrestart", "supervision restarts"),
    ("child_states", "supervision.delete_supervisionchildstate", "supervision child states"),
]


def delays_table(policy: SupervisionPolicy) -> str:
    """The restart delays a policy produces for attempts 1..8, as a small table.

    policy_delays.js refreshes it from ``delays_preview`` while the form is edited.
    """
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{} ms</td></tr>", ((n, d) for n, d in enumerate(policy.restart_delays(), start=1))
    )
    return format_html(
        '<table class="restart-delays" data-preview-url="{}"><tr><th>Attempt</th><th>Delay</th></tr>{}</table>',
        reverse("admin:supervision_supervisionpolicy_delays"),
        rows,
    )


class DelayPreviewForm(forms.ModelForm):
    """The fields that decide a policy's delays, validated as the policy form validates them."""

    class Meta:
        model = SupervisionPolicy
        fields = ["backoff_strategy", "backoff_factor", "min_restart_delay_ms", "max_restart_delay_ms"]


class NodeForm(ConcurrentEditGuard):
    """The node form, refusing to save over a node changed since it was loaded."""

    class Meta:
        model = SupervisionNode
        fields = "__all__"


class PolicyDelayPreviewMixin:
    @admin.display(description="Restart delays")
    def restart_delays(self, policy: SupervisionPolicy | None) -> str:
        return delays_table(policy or SupervisionPolicy())


POLICY_SCRIPTS = ["supervision/policy_delays.js", "supervision/policy_form.js", "supervision/policy_backtest.js"]
POLICY_STYLES = {"all": ["supervision/policy_backtest.css"]}
BACKTEST_PERMISSION = "supervision.view_supervisionfailure"  # the figures are made of the node's failures


def backtest_panel(policy: SupervisionPolicy | None) -> str:
    """The backtest panel: per period, the saved policy's figures beside the edited values', and the
    lint of the edited values. policy_backtest.js fills it from ``supervision:policy_backtest``."""
    rows = format_html_join(
        "",
        '<tr data-days="{}"><th scope="row">{}</th><td class="saved">…</td><td class="edited">…</td></tr>',
        ((days, f"{days} day{'s' if days > 1 else ''}") for days in backtest.PERIODS_DAYS),
    )
    node = policy.node_id if policy is not None and policy.node_id is not None else ""
    return format_html(
        '<div class="policy-backtest" data-backtest-url="{}" data-node="{}">'
        '<table class="policy-backtest-figures"><thead><tr><th scope="col">Over the last</th>'
        '<th scope="col">Saved policy</th><th scope="col">These values</th></tr></thead><tbody>{}</tbody></table>'
        '<ul class="policy-lint" aria-live="polite"></ul>'
        '<div class="policy-backtest-note">The node\u2019s failures replayed through the runtime\u2019s own rules '
        "(should_restart, calculate_restart_delay); at most the newest {} failures.</div></div>",
        reverse("supervision:policy_backtest"),
        node,
        rows,
        f"{backtest.REPLAY_CAP:,}",
    )


class PolicyBacktestMixin:
    """The backtest panel as a read-only field, for users who may see failures (it is made of them)."""

    @admin.display(description="Backtest")
    def policy_backtest(self, policy: SupervisionPolicy | None) -> str:
        return backtest_panel(policy)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if not request.user.has_perm(BACKTEST_PERMISSION):
            return fields
        after = fields.index("restart_delays") + 1 if "restart_delays" in fields else len(fields)
        return [*fields[:after], "policy_backtest", *fields[after:]]  # beside the delays it adds up


def warn_of_lint(request: HttpRequest, policy: SupervisionPolicy) -> None:
    """After a save: each crash-loop warning of the saved policy as an admin message (saved anyway)."""
    for warning in lint_saved(policy):
        messages.warning(request, f"{policy}: {warning.message}")


class PolicyInline(PolicyBacktestMixin, PolicyDelayPreviewMixin, admin.StackedInline):
    class Media:
        js = POLICY_SCRIPTS
        css = POLICY_STYLES

    model = SupervisionPolicy
    form = PolicyForm
    fk_name = "node"
    extra = 0
    max_num = 1
    can_delete = True
    readonly_fields = ["restart_delays"]


class ChildStateInline(IndexedTextLimitMixin, admin.TabularInline):
    model = SupervisionChildState
    formfield_overrides = STORABLE_JSON
    indexed_text_fields = ("child_id",)
    fk_name = "node"
    extra = 0
    fields = ["child_id", "child_node", "instance", "state", "last_heartbeat", "error_count", "restart_count"]
    raw_id_fields = ["child_node", "instance"]
    show_change_link = True


class LatestForNodeInline(admin.TabularInline):
    """The newest rows of a node's history, read-only: the full list is one link away."""

    extra = 0
    can_delete = False
    show_change_link = True
    order_field = ""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        node_pk = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if not node_pk:
            return queryset.none()
        latest = queryset.filter(node_id=node_pk).order_by(f"-{self.order_field}").values_list("pk", flat=True)
        return queryset.filter(pk__in=list(latest[:LATEST_ON_NODE_PAGE])).order_by(f"-{self.order_field}")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LatestFailuresInline(LatestForNodeInline):
    model = SupervisionFailure
    order_field = "occurred_at"
    verbose_name_plural = f"latest failures (up to {LATEST_ON_NODE_PAGE})"
    fields = ["occurred_at", "failure_reason", "failure_detail", "restart_attempted", "escalated_to_parent"]
    readonly_fields = fields


class LatestRestartsInline(LatestForNodeInline):
    model = SupervisionRestart
    fk_name = "node"
    order_field = "started_at"
    verbose_name_plural = f"latest restarts (up to {LATEST_ON_NODE_PAGE})"
    fields = ["started_at", "restart_attempt_number", "restart_delay_ms", "completed_at", "success", "error_message"]
    readonly_fields = fields


@admin.register(SupervisionNode)
class SupervisionNodeAdmin(LightChangelistMixin, DatabaseFilledOnAddMixin, IndexedTextLimitMixin, admin.ModelAdmin):
    form = NodeForm
    formfield_overrides = STORABLE_JSON  # jsonb refuses \u0000 and NaN: a field error, not a server error
    indexed_text_fields = ("node_id",)  # unique: a huge name would fail its index
    list_display = ["node_id", "node_type", "node_type_detail", "status", "parent", "agent", "updated_at"]
    list_filter = ["status", "node_type", ("updated_at", admin.DateFieldListFilter)]
    list_select_related = ["parent", "agent"]
    search_fields = ["node_id", "node_type_detail"]
    autocomplete_fields = ["parent", "agent"]
    readonly_fields = ["id", "created_at", "updated_at", "history_links", "tree_link"]
    fieldsets = [
        (
            None,
            {"fields": ["node_id", "node_type", "node_type_detail", "status", "parent", "agent", LOADED_VALUES_FIELD]},
        ),
        ("Runtime data", {"fields": ["configuration", "metadata", "terminated_at"]}),
        ("Record", {"fields": ["id", "created_at", "updated_at", "history_links", "tree_link"]}),
    ]
    inlines = [PolicyInline, ChildStateInline, LatestFailuresInline, LatestRestartsInline]
    actions = ["restart_selected", "delete_subtrees"]

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> list:
        """Django's message, with a changed policy's fields as "Label: old → new" (the history page shows it)."""
        message = super().construct_change_message(request, form, formsets, add)
        policy_forms = [f for formset in formsets or () if formset.model is SupervisionPolicy for f in formset.forms]
        return with_old_and_new(message, inline_forms=policy_forms)

    def save_model(self, request: HttpRequest, obj: SupervisionNode, form: Any, change: bool) -> None:
        """Saved with the user named in the node's history (supervision/history.py)."""
        history.record_as(request.user)
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The policy inline's policies are saved by the policy service (which announces them)."""
        if formset.model is not SupervisionPolicy:
            super().save_formset(request, form, formset, change)
            return
        changed = formset.save(commit=False)  # the new and changed ones, unsaved
        for deleted in formset.deleted_objects:
            deleted.delete()
        for policy in changed:
            policies.save_policy(policy, request.user, on_unpublished=lambda text: messages.warning(request, text))
            warn_of_lint(request, policy)
        formset.save_m2m()

    def has_restart_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("supervision.restart_node")

    @admin.action(permissions=["restart"], description="Restart selected nodes…")
    def restart_selected(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """First a page with what each restart would do; on confirmation, the same service as the tree."""
        nodes = list(queryset.order_by("node_id")[: BULK_RESTART_LIMIT + 1])
        if len(nodes) > BULK_RESTART_LIMIT:
            self.message_user(request, f"Select at most {BULK_RESTART_LIMIT} nodes to restart at once.", messages.ERROR)
            return None
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Restart these nodes?",
                "plans": [services.plan_restart(node.pk) for node in nodes],
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "supervision/restart_bulk_confirm.html", context)
        reason = request.POST.get("reason", "")
        for node in nodes:
            try:
                outcome = services.request_restart(node.pk, user=request.user, reason=reason)
            except services.RestartError as error:
                self.message_user(request, f"{node}: {error}", messages.ERROR)
                continue
            self.message_user(request, f"{node}: {outcome.message}", views.MESSAGE_LEVEL[outcome.status])
        return None

    def get_actions(self, request: HttpRequest) -> dict:
        """Django's "delete selected" deletes a whole subtree unseen: ``delete_subtrees`` replaces it."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        """The node's delete page: the whole cascade listed, the name typed when it has descendants."""
        node = self.get_object(request, unquote(object_id))
        if node is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_delete_permission(request, node):
            raise PermissionDenied
        if request.method == "POST":
            deleted = self._delete_confirmed(request, [node])
            if isinstance(deleted, int):
                below = f" and the {deleted - 1} node(s) below it" if deleted > 1 else ""
                self.message_user(request, f"Deleted the node “{node}”{below}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:supervision_supervisionnode_changelist"))
            return self._deletion_page(request, [node], errors=deleted, bulk=False)
        return self._deletion_page(request, [node], errors=[], bulk=False)

    @admin.action(permissions=["delete"], description="Delete selected nodes and everything below them…")
    def delete_subtrees(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """The bulk form of :meth:`delete_view`: one page for all selected nodes, a name per subtree."""
        nodes = list(queryset.order_by("node_id")[: BULK_DELETE_LIMIT + 1])
        if len(nodes) > BULK_DELETE_LIMIT:
            self.message_user(request, f"Select at most {BULK_DELETE_LIMIT} nodes to delete at once.", messages.ERROR)
            return None
        if request.POST.get("post") == "yes":
            deleted = self._delete_confirmed(request, nodes)
            if isinstance(deleted, int):
                self.message_user(request, f"Deleted {deleted} nodes ({len(nodes)} selected).", messages.SUCCESS)
                return None
            return self._deletion_page(request, nodes, errors=deleted, bulk=True)
        return self._deletion_page(request, nodes, errors=[], bulk=True)

    def _deletion_page(
        self, request: HttpRequest, nodes: list[SupervisionNode], *, errors: list[str], bulk: bool
    ) -> TemplateResponse:
        summary = cascade.cascade_of(nodes)
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete these nodes and everything below them?" if bulk else f"Delete “{nodes[0]}”?",
            "opts": self.opts,
            "cascade": summary,
            "bulk": bulk,
            "errors": errors,
            "perms_lacking": self._perms_lacking(request, summary),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/supervision/supervisionnode/delete_subtree.html", context)

    @staticmethod
    def _perms_lacking(request: HttpRequest, summary: cascade.Cascade) -> list[str]:
        return [
            label
            for count_name, permission, label in CASCADE_PERMISSIONS
            if getattr(summary, count_name) and not request.user.has_perm(permission)
        ]

    def _delete_confirmed(self, request: HttpRequest, nodes: list[SupervisionNode]) -> int | list[str]:
        """Delete when every check passes (the number of nodes deleted), else the reasons (nothing deleted)."""
        summary = cascade.cascade_of(nodes)
        if self._perms_lacking(request, summary):
            raise PermissionDenied
        errors = []
        for root in summary.roots:
            if not root.needs_typed_name:
                continue
            typed = request.POST.get(f"confirm-{root.node.pk}", "").strip()
            if not typed:
                errors.append(
                    f"“{root.node}” has {root.descendants} node(s) below it: type its name to delete them all."
                )
            elif typed != root.node.node_id:
                errors.append(f"“{typed}” is not the name of the node “{root.node}”: type the name exactly.")
        try:
            expected = int(request.POST.get("expected_nodes", ""))
        except ValueError:
            errors.append("The page did not say how many nodes it showed: look at the list again and confirm.")
            expected = None
        if errors:
            return errors
        try:
            return cascade.delete_subtrees(nodes, user_id=request.user.pk, expected_nodes=expected)
        except cascade.SubtreeChanged as error:
            return [str(error)]

    @admin.display(description="Supervision tree")
    def tree_link(self, node: SupervisionNode) -> str:
        if not node.pk:
            return "-"
        return format_html('<a href="{}">Show in the supervision tree</a>', node_tree_url(node.pk))

    @admin.display(description="History")
    def history_links(self, node: SupervisionNode) -> str:
        if not node.pk:
            return "-"
        failures = reverse("admin:supervision_supervisionfailure_changelist") + f"?node__id__exact={node.pk}"
        restarts = reverse("admin:supervision_supervisionrestart_changelist") + f"?node__id__exact={node.pk}"
        return format_html('<a href="{}">All failures</a> · <a href="{}">All restarts</a>', failures, restarts)


@admin.register(SupervisionPolicy)
class SupervisionPolicyAdmin(
    LightChangelistMixin, DatabaseFilledOnAddMixin, PolicyBacktestMixin, PolicyDelayPreviewMixin, admin.ModelAdmin
):
    form = PolicyForm
    list_display = [
        "node",
        "supervision_strategy",
        "max_restarts",
        "time_window_seconds",
        "backoff_strategy",
        "backoff_factor",
        "min_restart_delay_ms",
        "max_restart_delay_ms",
        "escalate_on_limit",
    ]
    list_filter = ["supervision_strategy", "backoff_strategy", "escalate_on_limit"]
    list_select_related = ["node"]
    search_fields = ["node__node_id"]
    autocomplete_fields = ["node"]
    readonly_fields = ["restart_delays", "created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: SupervisionPolicy, form: Any, change: bool) -> None:
        """Saved and announced by the policy service, as every saved policy is."""
        policies.save_policy(obj, request.user, on_unpublished=lambda text: messages.warning(request, text))
        warn_of_lint(request, obj)

    class Media:
        js = POLICY_SCRIPTS
        css = POLICY_STYLES

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> list:
        """Django's message, with each changed field as "Label: old → new" (the history page shows it)."""
        return with_old_and_new(super().construct_change_message(request, form, formsets, add), page_form=form)

    def get_urls(self) -> list:
        preview = path(
            "delays/", self.admin_site.admin_view(self.delays_preview), name="supervision_supervisionpolicy_delays"
        )
        return [preview, *super().get_urls()]

    def delays_preview(self, request: HttpRequest) -> JsonResponse:
        """The delays of attempts 1..8 for the settings in the query string (unsaved)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        form = DelayPreviewForm(request.GET)
        if not form.is_valid():  # runs the model's clean() too: the same checks as the policy form
            return JsonResponse({"errors": form.errors}, status=400)
        return JsonResponse({"delays": form.instance.restart_delays()})


class NodeHistoryMixin:
    """For tables of a node's history: a link to the node, and search by the node's exact name.

    The search resolves the name to the node's id first (unique index), so the rows are read
    through the (node_id, time) index instead of joining every row to its node.
    """

    search_help_text = "The exact name of a node."

    @admin.display(description="node", ordering="node__node_id")
    def node_link(self, obj: Any) -> str:
        url = reverse("admin:supervision_supervisionnode_change", args=[obj.node_id])
        return format_html('<a href="{}">{}</a>', url, obj.node.node_id)

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """The node column with the node's place in the tree too, for a user who may open the tree."""
        columns = list(super().get_list_display(request))  # type: ignore[misc]
        if "node_link" not in columns or not request.user.has_perm("supervision.view_supervisionnode"):
            return columns

        def node_and_tree(obj: Any) -> str:
            return format_html(
                '{} <a href="{}" class="node-tree-link" title="Its place in the supervision tree">(tree)</a>',
                self.node_link(obj),
                node_tree_url(obj.node_id),
            )

        node_and_tree.short_description = "node"  # type: ignore[attr-defined]
        node_and_tree.admin_order_field = "node__node_id"  # type: ignore[attr-defined]
        columns[columns.index("node_link")] = node_and_tree
        return columns

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        node_ids = list(SupervisionNode.objects.filter(node_id=term).values_list("id", flat=True))
        return queryset.filter(node_id__in=node_ids), False


@admin.register(SupervisionFailure)
class SupervisionFailureAdmin(RuntimeOwnedMixin, NodeHistoryMixin, LargeTableAdmin):
    formfield_overrides = STORABLE_JSON
    runtime_owned_fields = (
        "node",
        "failure_reason",
        "failure_detail",
        "stack_trace",
        "context",
        "occurred_at",
        "restart_attempted",
        "escalated_to_parent",
        "correlation_id",
    )
    list_display = [
        "occurred_at",
        "node_link",
        "failure_reason",
        "short_detail",
        "restart_attempted",
        "escalated_to_parent",
        "recovery_action",
        "incident_link",
        "tree_before",
    ]
    list_filter = [
        "failure_reason",
        "restart_attempted",
        "escalated_to_parent",
        ("occurred_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["node"]
    # By node name only (NodeHistoryMixin): a substring search of failure_detail would scan every row.
    search_fields = ["node__node_id"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["node"]
    readonly_fields = ["id", "incident_link", "tree_before"]
    ordering = ["-occurred_at"]

    @admin.display(description="incident")
    def incident_link(self, failure: SupervisionFailure) -> str:
        """The failure's story (mistersmith/console/incidents): decision, restarts, agent events."""
        if failure.pk is None:
            return "—"
        url = reverse_with_id("incidents:page", failure.pk)
        return format_html('<a href="{}" class="incident-link">The story</a>', url)

    @admin.display(description="Tree")
    def tree_before(self, failure: SupervisionFailure) -> str:
        """The tree 5 minutes before the failure, at its node, with what changed up to it."""
        if not failure.pk:
            return "-"
        url = moments.before_failure_url(failure.node_id, failure.occurred_at)
        return format_html('<a class="tree-before-failure" href="{}">5 minutes before this failure</a>', url)

    @admin.display(description="detail")
    def short_detail(self, failure: SupervisionFailure) -> str:
        detail = failure.failure_detail
        return detail if len(detail) <= 80 else f"{detail[:79]}…"


@admin.register(SupervisionRestart)
class SupervisionRestartAdmin(RuntimeOwnedMixin, NodeHistoryMixin, LargeTableAdmin):
    runtime_owned_fields = (
        "node",
        "failure",
        "restart_attempt_number",
        "restart_delay_ms",
        "started_at",
        "completed_at",
        "success",
        "new_instance_id",
    )
    list_display = [
        "started_at",
        "node_link",
        "restart_attempt_number",
        "restart_delay_ms",
        "completed_at",
        "success",
        "error_message",
    ]
    list_filter = ["success", ("started_at", admin.DateFieldListFilter), ("completed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["node"]
    search_fields = ["node__node_id"]
    date_hierarchy = "started_at"
    raw_id_fields = ["node", "failure"]
    readonly_fields = ["id"]
    ordering = ["-started_at"]


@admin.register(SupervisionChildState)
class SupervisionChildStateAdmin(
    LightChangelistMixin,
    DatabaseFilledOnAddMixin,
    RuntimeOwnedMixin,
    NodeHistoryMixin,
    IndexedTextLimitMixin,
    admin.ModelAdmin,
):
    formfield_overrides = STORABLE_JSON
    indexed_text_fields = ("child_id",)
    runtime_owned_fields = ("node", "child_id", "state", "state_data", "last_heartbeat", "error_count", "restart_count")
    list_display = ["child_id", "node_link", "state", "last_heartbeat", "error_count", "restart_count", "updated_at"]
    list_filter = ["state", ("last_heartbeat", admin.DateFieldListFilter)]
    list_select_related = ["node"]
    search_fields = ["child_id", "=node__node_id"]
    search_help_text = None
    get_search_results = admin.ModelAdmin.get_search_results  # a few rows per node: the stock search is fine
    raw_id_fields = ["node", "child_node", "instance"]
    readonly_fields = ["id", "created_at", "updated_at"]
