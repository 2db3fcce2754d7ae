"""The supervision tree page and the JSON it loads while it is explored, as admin views.

Each view is a thin shell over :mod:`supervision.selectors`: it checks access, reads the query
string, calls one selector and answers. Access is the admin's own (login and staff, through
``admin.site.admin_view``) plus the node model's view permission; the Restart link is offered
only to those who may restart, and the restart page checks again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from mistersmith.live.positions import stream_positions
from mistersmith.web.access import admin_page, hidden_parts, live_page_context, may_view
from supervision import past, selectors
from supervision.models import (
    NodeStatus,
    NodeType,
    SupervisionChildState,
    SupervisionFailure,
    SupervisionPolicy,
    SupervisionRestart,
)
from supervision.views import moments

VIEW_PERMISSION = "supervision.view_supervisionnode"
RESTART_PERMISSION = "supervision.restart_node"
# URLs with a node id are handed to the browser once, with this id to replace.
URL_PLACEHOLDER = uuid.UUID(int=0)

View = Callable[..., HttpResponse]


tree_view = admin_page(VIEW_PERMISSION)


def _restart_url(node_pk: uuid.UUID | str) -> str:
    """The restart confirmation, coming back to the tree at this node afterwards."""
    return f"{reverse('supervision:restart', args=[node_pk])}?{urlencode({'next': node_tree_url(node_pk)})}"


def node_tree_url(node_pk: uuid.UUID | str) -> str:
    """The tree opened at a node (its ancestors expanded, it selected): for links from elsewhere."""
    return f"{reverse('supervision:tree')}?{urlencode({'node': str(node_pk)})}"


@tree_view
def tree_page(request: HttpRequest) -> HttpResponse:
    """The page: the top levels (or the filtered tree), with the path to ``?node=`` opened; with
    ``?at=``, the tree as it was then (and with ``?compare=``, what changed between the two)."""
    if "at" in request.GET:
        return _past_page(request)
    filters = _filters(request)
    deep_link = _uuid_or_none(request.GET.get("node"))
    if filters:
        tree = selectors.filtered_tree(filters.get("status"), filters.get("type"), "budget" in filters)
    else:
        tree = selectors.top_levels(scope=_uuid_or_none(request.GET.get("root")), deep_link=deep_link)
    context = live_page_context(
        request,
        "Supervision tree",
        tree=_visible_tree(request, tree.as_json()),
        tree_config=_client_config(filters),
        filters=filters,
        status_choices=NodeStatus.choices,
        type_choices=NodeType.choices,
        node_not_found=bool(request.GET.get("node")) and not filters and tree.selected is None,
        moment_steps=moments.steps(timezone.now(), str(deep_link) if deep_link else None),
        time_zone=timezone.get_current_timezone_name(),
    )
    return TemplateResponse(request, "supervision/tree.html", context)


@tree_view
def tree_children(request: HttpRequest) -> HttpResponse:
    """One page of a node's children (``?parent=``; none: the roots), after the name ``?after=``;
    with ``?at=``, as they were then."""
    parent = request.GET.get("parent") or None
    if parent is not None and _uuid_or_none(parent) is None:
        return HttpResponseBadRequest("parent must be a node id")
    at, error = _moment_of(request)
    if error is not None:
        return error
    after = request.GET.get("after") or None
    page = selectors.children_page(parent, after=after) if at is None else past.children_page_at(at, parent, after)
    return JsonResponse(_visible_tree(request, page.as_json()))


@tree_view
def tree_search(request: HttpRequest) -> HttpResponse:
    """Nodes whose name contains ``?q=``, within the status and type filters."""
    filters = _filters(request)
    results = selectors.search_nodes(request.GET.get("q", ""), filters.get("status"), filters.get("type"))
    return JsonResponse({"results": results})


@tree_view
def tree_path(request: HttpRequest, node_pk: uuid.UUID) -> HttpResponse:
    """What the page needs to open the path to a node (a search result, a link); ``?at=``: then."""
    at, error = _moment_of(request)
    if error is not None:
        return error
    tree = selectors.path_to(node_pk) if at is None else past.path_to_at(at, node_pk)
    if tree.selected is None:
        raise Http404("No such node.")
    return JsonResponse(_visible_tree(request, tree.as_json()))


@tree_view
def tree_node(request: HttpRequest, node_pk: uuid.UUID) -> HttpResponse:
    """A node's panel: its details and history, and the links this user may follow. The parts whose
    model the admin hides from this user are left out, each with the sentence shown in its place."""
    at, error = _moment_of(request)
    if error is not None:
        return error
    hidden = hidden_panel_parts(request)
    if at is not None:
        hidden.setdefault("child_states", PAST_CHILD_STATES)
    details = selectors.node_details(node_pk, hidden) if at is None else past.node_details_at(at, node_pk, hidden)
    if details is None:
        raise Http404("No such node." if at is None else "That node did not exist at that moment.")
    links = _panel_links(request.user, details["node"], at)
    _visible_nodes(request, [details["node"]])
    return JsonResponse({**details, "links": links, "hidden": hidden})


@tree_view
def tree_nodes(request: HttpRequest) -> HttpResponse:
    """The live tree's refresh: the nodes named by ``ids`` and the nodes of ``agents`` (comma-
    separated UUIDs, at most 500), with the stream positions they reflect."""
    try:
        node_ids = _uuid_list(request.GET.get("ids", ""))
        agent_ids = _uuid_list(request.GET.get("agents", ""))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    with transaction.atomic():
        nodes = selectors.nodes_for_refresh(node_ids, agent_ids)
        positions = stream_positions()
    return JsonResponse({"nodes": _visible_nodes(request, nodes), "positions": positions})


# The panel's parts that have a model of their own: shown only to whom the admin shows that model.
PANEL_PART_MODELS = {
    "failures": SupervisionFailure,
    "restarts": SupervisionRestart,
    "child_states": SupervisionChildState,
    "policy": SupervisionPolicy,
}
HIDDEN_POLICY = {"hidden": True}
PAST_CHILD_STATES = "Child states are not kept in the history: only the present ones are known."
ESCALATING_FILTER = "escalating"  # ?budget=escalating: the nodes one failure from escalating


def hidden_panel_parts(request: HttpRequest) -> dict[str, str]:
    """The panel's parts this user may not see (mistersmith.web.access.may_view), with what the page says instead."""
    return hidden_parts(request, PANEL_PART_MODELS)


def _visible_nodes(request: HttpRequest, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes as this user may see them: a node's policy is a policy's row, shown only to whom the
    admin shows policies; for others it says only that there is one (``{"hidden": true}``)."""
    if not may_view(request, SupervisionPolicy):
        for node in nodes:
            if node["policy"] is not None:
                node["policy"] = HIDDEN_POLICY
                node["budget"] = HIDDEN_POLICY  # the budget is the policy's figures
    return nodes


def _visible_tree(request: HttpRequest, tree: dict[str, Any]) -> dict[str, Any]:
    """A tree slice's JSON with every node passed through :func:`_visible_nodes`."""
    for group in tree["groups"]:
        _visible_nodes(request, group["nodes"])
        _visible_nodes(request, group["pinned"])
    return tree


def _uuid_list(text: str) -> list[uuid.UUID]:
    parts = [part for part in text.split(",") if part.strip()]
    if len(parts) > selectors.LIVE_REFRESH_LIMIT:
        raise ValueError(f"At most {selectors.LIVE_REFRESH_LIMIT} ids at a time.")
    try:
        return [uuid.UUID(part.strip()) for part in parts]
    except ValueError:
        raise ValueError("ids and agents are comma-separated UUIDs.") from None


def _panel_links(
    user: AbstractBaseUser | AnonymousUser, node: dict[str, Any], at: datetime | None = None
) -> dict[str, str | None]:
    """Where the panel may send this user; None where the user has no permission. In the past
    (``at``) the link to the node in the tree keeps the moment, and a restart is not offered."""
    pk = node["id"]
    history = f"?{urlencode({'node__id__exact': pk})}"
    policy = node["policy"]
    if policy is not None:
        may_see_policy = user.has_perm("supervision.view_supervisionpolicy") or user.has_perm(
            "supervision.change_supervisionpolicy"
        )
        policy_url = (
            reverse("admin:supervision_supervisionpolicy_change", args=[policy["id"]]) if may_see_policy else None
        )
    else:
        may_add = user.has_perm("supervision.add_supervisionpolicy")
        policy_url = (
            f"{reverse('admin:supervision_supervisionpolicy_add')}?{urlencode({'node': pk})}" if may_add else None
        )
    return {
        "change": reverse("admin:supervision_supervisionnode_change", args=[pk]),
        "tree": node_tree_url(pk) if at is None else moments.past_tree_url(at, pk),
        "now": node_tree_url(pk),
        "policy": policy_url,
        "failures": _if_allowed(user, "supervisionfailure", history),
        "restarts": _if_allowed(user, "supervisionrestart", history),
        "restart": _restart_url(pk) if user.has_perm(RESTART_PERMISSION) and at is None else None,
        # a failure's story (mistersmith/console/incidents), the failure's id in place of the placeholder
        "incident": reverse("incidents:page", args=[URL_PLACEHOLDER])
        if user.has_perm("supervision.view_supervisionfailure")
        else None,
        # the node's agent, on its live page (agents/page_urls.py), for whom may view agents
        "agent": reverse("agent_pages:detail", args=[node["agent"]["id"]])
        if node.get("agent") and user.has_perm("agents.view_agent")
        else None,
    }


def _if_allowed(user: AbstractBaseUser | AnonymousUser, model: str, query: str) -> str | None:
    if not user.has_perm(f"supervision.view_{model}"):
        return None
    return reverse(f"admin:supervision_{model}_changelist") + query


def _client_config(filters: dict[str, str]) -> dict[str, Any]:
    """What tree.js needs besides the data: its endpoints, as URL templates where they take an id."""
    return {
        "childrenUrl": reverse("supervision:tree_children"),
        "searchUrl": reverse("supervision:tree_search"),
        "pathUrl": reverse("supervision:tree_path", args=[URL_PLACEHOLDER]),
        "nodeUrl": reverse("supervision:tree_node", args=[URL_PLACEHOLDER]),
        "nodesUrl": reverse("supervision:tree_nodes"),
        "changeUrl": reverse("admin:supervision_supervisionnode_change", args=[URL_PLACEHOLDER]),
        "treeUrl": reverse("supervision:tree"),
        "placeholder": str(URL_PLACEHOLDER),
        "filters": filters,
    }


def _filters(request: HttpRequest) -> dict[str, str]:
    """The status, type and budget filters of the query string; unknown values are dropped."""
    filters = {}
    if (status := request.GET.get("status")) in NodeStatus.values:
        filters["status"] = status
    if (node_type := request.GET.get("type")) in NodeType.values:
        filters["type"] = node_type
    if request.GET.get("budget") == ESCALATING_FILTER:
        filters["budget"] = ESCALATING_FILTER
    return filters


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _moment_of(request: HttpRequest) -> tuple[datetime | None, HttpResponse | None]:
    """``?at=`` of a JSON request: (None, None) without one, (moment, None), or (None, a 400)."""
    if "at" not in request.GET:
        return None, None
    try:
        return moments.parse_moment(request.GET["at"]), None
    except moments.BadMoment as error:
        return None, JsonResponse({"error": str(error)}, status=400)


def _past_page(request: HttpRequest) -> HttpResponse:
    """The tree as it was at ``?at=``: no filters, no live updates; a bad moment is a 400 page saying why."""
    try:
        at = moments.parse_moment(request.GET["at"])
        compare = request.GET.get("compare")
        compare_at = moments.parse_moment(compare, "compare") if compare else None
    except moments.BadMoment as error:
        context = live_page_context(request, "Supervision tree", moment_error=str(error))
        return TemplateResponse(request, "supervision/tree_moment_error.html", context, status=400)
    deep_link = _uuid_or_none(request.GET.get("node"))
    tree = past.top_levels_at(at, deep_link)
    hidden = hidden_panel_parts(request)
    moment = past_context(at, past.known_from(), request.GET.get("node"))
    context = live_page_context(
        request,
        "Supervision tree",
        tree=_visible_tree(request, tree.as_json()),
        tree_config={**_client_config({}), "at": moments.iso(at)},
        filters={},
        past=moment,
        moment_steps=moment["steps"],
        time_zone=timezone.get_current_timezone_name(),
        diff=None if compare_at is None else diff_context(past.diff_moments(at, compare_at), hidden, request),
        node_not_found=bool(request.GET.get("node")) and tree.selected is None,
    )
    return TemplateResponse(request, "supervision/tree.html", context)


def past_context(at: datetime, known_from: datetime | None, node: str | None) -> dict[str, Any]:
    """What the page says about the moment it shows: the banner, the time control, the steps."""
    node = str(_uuid_or_none(node)) if _uuid_or_none(node) else None
    return {
        "at": moments.iso(at),
        "input": moments.input_value(at),
        "steps": moments.steps(at, node),
        "known_from": moments.iso(known_from) if known_from else None,
        "before_history": known_from is None or at < known_from,
        "now_url": node_tree_url(node) if node else reverse("supervision:tree"),
        "compare_now": moments.past_tree_url(at, node, compare=timezone.now()),
        "compare_steps": [
            {"label": label, "url": moments.past_tree_url(at, node, compare=at + offset)}
            for label, offset in moments.STEPS
            if at + offset <= timezone.now()
        ],
    }


def diff_context(diff: past.MomentsDiff, hidden: dict[str, str], request: HttpRequest) -> dict[str, Any]:
    """The diff of two moments as the page lists it: policy changes only for whom may see
    policies, failures and restarts only for whom may see them (else the sentence why not)."""
    nodes = diff.nodes.as_json()
    changed_count = len(nodes["changed"])
    nodes["changed"] = nodes["changed"][: past.DIFF_LIST_LIMIT]  # listed; all are counted
    policies_hidden = not may_view(request, SupervisionPolicy)
    for change in nodes["changed"]:
        change["link"] = moments.past_tree_url(diff.after, change["id"])
        if policies_hidden and change["policy"]:
            change["policy"] = [{"field": "policy", "before": "hidden", "after": "hidden"}]
    for part in ("failures", "restarts"):
        for row in getattr(diff, part):
            row["before_url"] = moments.before_failure_url(row["node_id"], row["at"]) if part == "failures" else None
            row["tree_url"] = moments.past_tree_url(row["at"], row["node_id"])
    return {
        "before": moments.iso(diff.before),
        "after": moments.iso(diff.after),
        "nodes": nodes,
        "nodes_truncated": diff.nodes_truncated,
        "changed_count": changed_count,
        "node_cap": past.DIFF_NODE_CAP,
        "failures": [] if "failures" in hidden else diff.failures,
        "failure_count": diff.failure_count,
        "restarts": [] if "restarts" in hidden else diff.restarts,
        "restart_count": diff.restart_count,
        "count_cap": past.COUNT_CAP,
        "hidden": hidden,
    }
