"""The permission matrix: every URL the console serves and every WebSocket topic, against six users.

The URLs are not listed by hand: they are read from Django's URL resolver, so a new URL cannot be
forgotten. Each pattern must have an expectation here, by rule: the admin's model pages (staff,
then the permission the model's ModelAdmin asks for), the console's own pages and JSON endpoints
(by URL name, in EXPECTED), superuser-only pages, and the public probes. A pattern without one
fails ``test_every_url_has_an_expectation`` with its name, so whoever adds a URL decides who may
use it.

The users: anonymous; ``member``, active but not staff, holding every view permission (so a page
that forgets the staff check shows up); ``bare_staff``, staff without any permission; ``viewer``,
staff with every view permission but no other; ``restarter``, the viewer plus
``supervision.restart_node``; and a superuser. Outcomes: a status code, LOGIN (a redirect to the
admin's login form with ``next``), or ("to", url) for a plain redirect.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from mistersmith.asgi import application
from mistersmith.live import consumer as consumers

USERS = ("anonymous", "member", "bare_staff", "viewer", "restarter", "superuser")
STAFF = frozenset({"bare_staff", "viewer", "restarter", "superuser"})
LOGIN = "login"
RESTART = "supervision.restart_node"
HIVE_DATABASES = ["default", "hive", "hive_memory"]
PAST = "2026-01-01T00:00:00Z"  # a moment of the tree's past (?at=), before any history: an empty tree
ADMIN_VIEWS = ("changelist", "add", "change", "delete", "history")

Outcome = int | str | tuple[str, str]


def has(user: str, permission: str | None) -> bool:
    """What each user holds (see the module docstring); None: any logged-in user."""
    if user == "anonymous":
        return False
    if permission is None or user == "superuser":
        return True
    if user == "bare_staff":
        return False
    if permission.split(".", 1)[1].startswith("view_"):
        return True
    return user == "restarter" and permission == RESTART


# --- Rules ---------------------------------------------------------------------------------------


def admin_page(permission: str | None = None, ok: Outcome = 200, bare: Outcome | None = None) -> dict[str, Outcome]:
    """An admin view: anonymous and non-staff to the login form; staff: ``ok`` with the permission,
    else 403 (``bare``: what staff without any permission get, where the view says so otherwise)."""
    expected = {user: LOGIN if user not in STAFF else ok if has(user, permission) else 403 for user in USERS}
    if bare is not None:
        expected["bare_staff"] = bare
    return expected


def staff_json(permission: str | None = None, non_staff: int = 403, ok: int = 200) -> dict[str, Outcome]:
    """A JSON endpoint for staff: 401 anonymous, ``non_staff`` for a logged-in non-staff user, 403
    for staff without the permission (an API answers, it never redirects)."""
    return {
        user: 401 if user == "anonymous" else non_staff if user not in STAFF else ok if has(user, permission) else 403
        for user in USERS
    }


def api_json(permission: str) -> dict[str, Outcome]:
    """The runtime's JSON API: any logged-in user with the permission (API clients need not be staff)."""
    return {user: 401 if user == "anonymous" else 200 if has(user, permission) else 403 for user in USERS}


def superuser_page(ok: Outcome = 200) -> dict[str, Outcome]:
    return {user: LOGIN if user not in STAFF else ok if user == "superuser" else 403 for user in USERS}


def everyone(outcome: Outcome) -> dict[str, Outcome]:
    return dict.fromkeys(USERS, outcome)


@dataclass
class Case:
    """One request and what each user gets from it."""

    path: str
    expected: dict[str, Outcome]
    method: str = "GET"
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # request META, e.g. REMOTE_ADDR

    def label(self) -> str:
        where = f" from {self.extra['REMOTE_ADDR']}" if "REMOTE_ADDR" in self.extra else ""
        return f"{self.method} {self.path}{where}"


# --- The URLs the project serves -----------------------------------------------------------------


def served_patterns() -> Iterator[tuple[str, str]]:
    """(key, route) of every URL pattern: the namespaced name, or the route for an unnamed one."""

    def walk(patterns: list, prefix: str, namespace: str | None) -> Iterator[tuple[str, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = namespace
                if pattern.namespace:
                    inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                if pattern.name:
                    yield (f"{namespace}:{pattern.name}" if namespace else pattern.name), route
                else:
                    yield route or "/", route

    yield from walk(get_resolver().url_patterns, "", None)


def admin_model_keys() -> dict[str, tuple[type, str]]:
    """The admin's five pages of every registered model, and its unnamed ``<id>/`` redirect."""
    keys = {}
    for model in admin.site._registry:
        app, name = model._meta.app_label, model._meta.model_name
        for view in ADMIN_VIEWS:
            keys[f"admin:{app}_{name}_{view}"] = (model, view)
        keys[f"admin/{app}/{name}/<path:object_id>/"] = (model, "redirect")
    return keys


# The console's own URLs, the admin site's own pages and the probes: key -> cases(objects).
EXPECTED: dict[str, Callable[[dict[str, Any]], list[Case]]] = {
    # Public by design: liveness and readiness say "ok" or component names only.
    "/": lambda o: [Case("/", everyone(("to", "/admin/")))],
    "healthz": lambda o: [Case("/healthz", everyone(200))],
    "readyz": lambda o: [Case("/readyz", everyone(200))],
    "favicon": lambda o: [Case("/favicon.ico", everyone(200))],  # the icon browsers ask for on every page
    # The scraper's endpoint: by address or token, never by session. From an address outside
    # METRICS_ALLOWED_NETWORKS nobody gets it, superuser or not; from loopback (the default) all do.
    "metrics": lambda o: [
        Case("/metrics", everyone(404), extra={"REMOTE_ADDR": "203.0.113.9"}),
        Case("/metrics", everyone(404), extra={"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}),
        Case("/metrics", everyone(200), extra={"REMOTE_ADDR": "127.0.0.1"}),
    ],
    "discoveries": lambda o: [Case("/discoveries", api_json("agents.view_discovery"))],
    "discoveries-api": lambda o: [Case("/api/v1/discoveries", api_json("agents.view_discovery"))],
    # The supervision pages.
    "supervision:restart": lambda o: [
        Case(reverse("supervision:restart", args=[o["node"].pk]), admin_page(RESTART)),
        # A POST with a stale fingerprint: past the permission check, nothing is requested (409).
        Case(
            reverse("supervision:restart", args=[o["node"].pk]),
            admin_page(RESTART, ok=409),
            method="POST",
            data={"fingerprint": "stale", "reason": "matrix"},
        ),
    ],
    "supervision:tree": lambda o: [
        Case(reverse("supervision:tree"), admin_page("supervision.view_supervisionnode")),
        # The tree at a past moment, with the diff of two moments; an unreadable moment is a 400.
        Case(
            reverse("supervision:tree") + f"?at={PAST}&compare={PAST}&node={o['node'].pk}",
            admin_page("supervision.view_supervisionnode"),
        ),
        Case(reverse("supervision:tree") + "?at=yesterday", admin_page("supervision.view_supervisionnode", ok=400)),
    ],
    "supervision:tree_children": lambda o: [
        Case(reverse("supervision:tree_children"), admin_page("supervision.view_supervisionnode")),
        Case(reverse("supervision:tree_children") + f"?at={PAST}", admin_page("supervision.view_supervisionnode")),
    ],
    "supervision:tree_search": lambda o: [
        Case(reverse("supervision:tree_search") + "?q=mx", admin_page("supervision.view_supervisionnode"))
    ],
    "supervision:tree_path": lambda o: [
        Case(reverse("supervision:tree_path", args=[o["node"].pk]), admin_page("supervision.view_supervisionnode"))
    ],
    "supervision:tree_node": lambda o: [
        Case(reverse("supervision:tree_node", args=[o["node"].pk]), admin_page("supervision.view_supervisionnode"))
    ],
    "supervision:tree_nodes": lambda o: [
        Case(
            reverse("supervision:tree_nodes") + f"?ids={o['node'].pk}",
            admin_page("supervision.view_supervisionnode"),
        )
    ],
    "admin:supervision_supervisionpolicy_delays": lambda o: [
        Case(
            reverse("admin:supervision_supervisionpolicy_delays")
            + "?backoff_strategy=Linear&backoff_factor=2&min_restart_delay_ms=10&max_restart_delay_ms=1000",
            admin_page("supervision.view_supervisionpolicy"),
        )
    ],
    # The policy form's backtest (issue 15): the views of policies and of failures (the matrix's viewer
    # holds both; test_backtest_view checks each alone); bad values are a 400 past the checks.
    "supervision:policy_backtest": lambda o: [
        Case(
            reverse("supervision:policy_backtest") + f"?node={o['node'].pk}",
            staff_json("supervision.view_supervisionfailure"),
        ),
        Case(
            reverse("supervision:policy_backtest") + f"?node={o['node'].pk}&max_restarts=-1",
            staff_json("supervision.view_supervisionfailure", ok=400),
        ),
    ],
    # The bulk restart action (on top of the node changelist's own cases): view-only staff have no
    # action at all, so their POST is only the list again (200; test_bulk_restart_action_... checks
    # it is not the confirmation); restarters get the confirmation page, nothing more.
    "admin:supervision_supervisionnode_changelist": lambda o: [
        Case(
            reverse("admin:supervision_supervisionnode_changelist"),
            {**admin_page(RESTART), "viewer": 200},
            method="POST",
            data={"action": "restart_selected", "_selected_action": str(o["node"].pk), "index": "0"},
        )
    ],
    # A failure's story and its export (mistersmith/console/incidents): the failures' view permission.
    "incidents:page": lambda o: [
        Case(reverse("incidents:page", args=[o["failure"].pk]), admin_page("supervision.view_supervisionfailure"))
    ],
    "incidents:json": lambda o: [
        Case(reverse("incidents:json", args=[o["failure"].pk]), staff_json("supervision.view_supervisionfailure"))
    ],
    # The live pages and their snapshots.
    "dashboard:page": lambda o: [Case(reverse("dashboard:page"), admin_page())],
    "dashboard:snapshot": lambda o: [Case(reverse("dashboard:snapshot"), staff_json())],
    "dashboard:freshness": lambda o: [Case(reverse("dashboard:freshness"), staff_json())],
    # Failures or restarts: each family needs its own view permission (the matrix's viewer holds both).
    "dashboard:charts": lambda o: [
        Case(reverse("dashboard:charts"), staff_json("supervision.view_supervisionfailure")),
        Case(reverse("dashboard:charts") + "?window=2h", staff_json("supervision.view_supervisionfailure", ok=400)),
    ],
    "event_log:page": lambda o: [
        Case(reverse("event_log:page"), {**admin_page("mistersmith.view_event_log"), "member": 403})
    ],
    "event_log:snapshot": lambda o: [Case(reverse("event_log:snapshot"), staff_json("mistersmith.view_event_log"))],
    "event_log:replay": lambda o: [
        Case(reverse("event_log:replay") + "?stream=AGENT_EVENTS", staff_json("mistersmith.view_event_log"))
    ],
    # One whole message (a row opened): past the checks, a sequence the stream never held is a 404.
    "event_log:message": lambda o: [
        Case(
            reverse("event_log:message") + "?stream=AGENT_EVENTS&sequence=999999999999",
            staff_json("mistersmith.view_event_log", ok=404),
        )
    ],
    "agent_pages:list": lambda o: [Case(reverse("agent_pages:list"), admin_page("agents.view_agent"))],
    "agent_pages:list_snapshot": lambda o: [
        Case(reverse("agent_pages:list_snapshot"), staff_json("agents.view_agent", non_staff=401))
    ],
    "agent_pages:detail": lambda o: [
        Case(reverse("agent_pages:detail", args=[o["agent"].pk]), admin_page("agents.view_agent"))
    ],
    # The agent's place in the tree: its node selected (needs the view of nodes too; no node: 404).
    "agent_pages:tree": lambda o: [
        Case(
            reverse("agent_pages:tree", args=[o["agent"].pk]),
            admin_page(
                "agents.view_agent",
                ok=("to", f"{reverse('supervision:tree')}?node={o['agent'].supervision_node_id}")
                if o["agent"].supervision_node_id
                else 404,
            ),
        )
    ],
    "agent_pages:detail_snapshot": lambda o: [
        Case(
            reverse("agent_pages:detail_snapshot", args=[o["agent"].pk]),
            staff_json("agents.view_agent", non_staff=401),
        )
    ],
    # The whole of a text the page shows cut: past the checks, a message the agent never had is a 404.
    "agent_pages:text": lambda o: [
        Case(
            reverse("agent_pages:text", args=[o["agent"].pk]) + "?message=999999",
            staff_json("agents.view_agent", non_staff=401, ok=404),
        )
    ],
    # An agent's stored message whole (its history's raw payload: the event log's permission too).
    "agent_pages:payload": lambda o: [
        Case(
            reverse("agent_pages:payload", args=[o["agent"].pk]) + "?sequence=999999999999",
            staff_json("mistersmith.view_event_log", non_staff=401, ok=404),
        )
    ],
    # A command changes state: an unknown command gets past the permission check only (400, nothing sent).
    "agent_pages:command": lambda o: [
        Case(
            reverse("agent_pages:command", args=[o["agent"].pk]),
            staff_json("agents.command_agent", non_staff=401, ok=400),
            method="POST",
            data={"command": "no-such-command"},
        )
    ],
    # Bulk agent commands (issue 14): the command permission; an unknown command goes back to the list
    # with its error (nothing planned, nothing sent); a run that does not exist is a 404 past the checks.
    "agent_pages:bulk": lambda o: [
        Case(
            reverse("agent_pages:bulk"),
            admin_page("agents.command_agent", ok=("to", reverse("agent_pages:list"))),
            method="POST",
            data={"command": "no-such-command", "scope": "selection"},
        )
    ],
    "agent_pages:bulk_run": lambda o: [
        Case(reverse("agent_pages:bulk_run", args=[uuid.uuid4()]), admin_page("agents.command_agent", ok=404))
    ],
    "agent_pages:bulk_results": lambda o: [
        Case(reverse("agent_pages:bulk_results", args=[uuid.uuid4()]), admin_page("agents.command_agent", ok=404))
    ],
    # A person's own recent restarts and bulk runs (every live page reads it): any staff, their own only.
    "actions:mine": lambda o: [Case(reverse("actions:mine"), staff_json())],
    # A person's saved views of the live pages: any staff, their own only (a view of nobody's is a 404).
    "saved_views:list": lambda o: [Case(reverse("saved_views:list") + "?page=/admin/events/", staff_json())],
    "saved_views:detail": lambda o: [
        Case(reverse("saved_views:detail", args=[2**31 - 1]), staff_json(ok=404), method="DELETE")
    ],
    "discovery_pages:page": lambda o: [Case(reverse("discovery_pages:page"), admin_page("agents.view_discovery"))],
    "discovery_pages:snapshot": lambda o: [
        Case(reverse("discovery_pages:snapshot"), admin_page("agents.view_discovery"))
    ],
    # State operations (issue 5): verification for staff, snapshots for superusers only.
    "verify_state:page": lambda o: [Case(reverse("verify_state:page"), admin_page())],
    "verify_state:json": lambda o: [Case(reverse("verify_state:json"), staff_json())],
    "snapshots:list": lambda o: [
        Case(reverse("snapshots:list"), superuser_page()),
        Case(reverse("snapshots:list"), superuser_page(ok=None), method="POST", data={"streams": ""}),
    ],
    "snapshots:download": lambda o: [Case(reverse("snapshots:download", args=[o["snapshot"]]), superuser_page())],
    # The snapshot diff: reads only (a POST is 405 for the superuser).
    "snapshots:compare": lambda o: [
        Case(reverse("snapshots:compare"), superuser_page()),
        Case(f"{reverse('snapshots:compare')}?before={o['snapshot']}&after=now", superuser_page()),
        Case(f"{reverse('snapshots:compare')}?before=missing.tar", superuser_page(ok=400)),
        Case(reverse("snapshots:compare"), superuser_page(ok=405), method="POST", data={"before": o["snapshot"]}),
    ],
    "snapshots:compare_json": lambda o: [
        Case(f"{reverse('snapshots:compare_json')}?before={o['snapshot']}", superuser_page()),
        Case(reverse("snapshots:compare_json"), superuser_page(ok=400)),
    ],
    # The restore's confirmation page; its POST (which replaces the state) is refused to all but
    # the superuser, whose POST is not sent.
    "snapshots:restore": lambda o: [
        Case(reverse("snapshots:restore", args=[o["snapshot"]]), superuser_page()),
        Case(
            reverse("snapshots:restore", args=[o["snapshot"]]),
            superuser_page(ok=None),
            method="POST",
            data={"confirm": o["snapshot"]},
        ),
    ],
    # The admin site's own pages.
    "admin:index": lambda o: [Case(reverse("admin:index"), admin_page())],
    "admin:login": lambda o: [
        Case(reverse("admin:login"), {u: ("to", "/admin/") if u in STAFF else 200 for u in USERS})
    ],
    # POST only (Django 5); the admin sends those who are not logged in as staff to its index.
    "admin:logout": lambda o: [
        Case(reverse("admin:logout"), {u: 405 if u in STAFF else ("to", "/admin/") for u in USERS})
    ],
    "admin:password_change": lambda o: [Case(reverse("admin:password_change"), admin_page())],
    "admin:password_change_done": lambda o: [Case(reverse("admin:password_change_done"), admin_page())],
    "admin:jsi18n": lambda o: [Case(reverse("admin:jsi18n"), admin_page())],
    "admin:autocomplete": lambda o: [
        Case(
            reverse("admin:autocomplete")
            + "?app_label=supervision&model_name=supervisionnode&field_name=parent&term=mx",
            admin_page("supervision.view_supervisionnode"),
        )
    ],
    # No model has a public URL of its own: the view-on-site shortcut finds none (404).
    "admin:view_on_site": lambda o: [
        Case(
            reverse(
                "admin:view_on_site",
                args=[ContentType.objects.get_for_model(o["node"]).pk, o["node"].pk],
            ),
            admin_page(ok=404),
        )
    ],
    # An app's index: staff who may see nothing in it get 404 (the admin does not say it exists).
    "admin:app_list": lambda o: [
        Case(
            reverse("admin:app_list", args=["supervision"]),
            admin_page("supervision.view_supervisionnode", bare=404),
        )
    ],
    "admin/(?P<url>.*)$": lambda o: [Case("/admin/no-such-page/", admin_page(ok=404))],
    "admin:auth_user_password_change": lambda o: [
        Case(reverse("admin:auth_user_password_change", args=[o["member_user"].pk]), admin_page("auth.change_user"))
    ],
}


# --- Fixtures: the users, and one real object of every model -------------------------------------


def make_users() -> dict[str, Any]:
    """The five logged-in users (no password: the clients force_login)."""
    user_model = get_user_model()
    view = list(Permission.objects.filter(codename__startswith="view_"))
    tag = uuid.uuid4().hex[:6]
    users = {
        "member": user_model.objects.create_user(f"member-{tag}", is_staff=False),
        "bare_staff": user_model.objects.create_user(f"bare-{tag}", is_staff=True),
        "viewer": user_model.objects.create_user(f"viewer-{tag}", is_staff=True),
        "restarter": user_model.objects.create_user(f"restarter-{tag}", is_staff=True),
        "superuser": user_model.objects.create_superuser(f"super-{tag}", f"super-{tag}@example.com", None),
    }
    for name in ("member", "viewer", "restarter"):
        users[name].user_permissions.add(*view)
    users["restarter"].user_permissions.add(
        Permission.objects.get(content_type__app_label="supervision", codename="restart_node")
    )
    return users


def make_objects(users: dict[str, Any]) -> dict[str, Any]:
    """A small installation with at least one row in every table the admin shows."""
    from agents import discoveries
    from agents.models import Agent, AgentAnomaly, AgentCommandRecord
    from mistersmith.live.models import BridgePosition, DeadLetter
    from mistersmith.simulator import demo
    from supervision.models import SupervisionFailure, SupervisionNode
    from tests.agents.test_discoveries import payload

    demo.seed(prefix="mx", nodes=12, failures=20, sessions=2, hive=True)
    agent = Agent.objects.first()
    DeadLetter.objects.create(
        stream="AGENT_EVENTS", subject="agent.x.events", sequence=1, reason="matrix", error="", payload_excerpt="{}"
    )
    BridgePosition.objects.get_or_create(consumer=f"matrix-{uuid.uuid4().hex[:6]}", stream="AGENT_EVENTS", sequence=1)
    AgentAnomaly.objects.create(agent_id=agent.pk, event_kind="StateChanged", detail="matrix")
    AgentCommandRecord.objects.create(agent_id=agent.pk, command="status", outcome="refused")
    discoveries.add_discoveries([discoveries.parse_discovery(payload(1), sequence=1)])
    Group.objects.create(name=f"matrix-{uuid.uuid4().hex[:6]}")
    try:
        from axes.models import AccessAttempt, AccessFailureLog, AccessLog

        fields = {"user_agent": "matrix", "ip_address": "10.9.9.9", "username": "someone", "http_accept": "*/*"}
        AccessAttempt.objects.create(**fields, path_info="/admin/login/", failures_since_start=1)
        AccessLog.objects.create(**fields, path_info="/admin/login/")
        AccessFailureLog.objects.create(**fields, path_info="/admin/login/")
    except ImportError:  # axes not installed: its admin is not registered either
        pass
    return {
        "node": SupervisionNode.objects.get(node_id="mx-root"),
        "failure": SupervisionFailure.objects.order_by("pk").first(),
        "agent": agent,
        "member_user": users["member"],
        "snapshot": make_snapshot(),
    }


def make_snapshot() -> str:
    """A real snapshot of this small installation in the snapshot directory (the test's own)."""
    from mistersmith.operations.snapshots.export import ExportOptions, export_snapshot

    return export_snapshot(ExportOptions(streams=False)).path.name


@pytest.fixture(autouse=True)
def snapshot_dir(settings, tmp_path):
    settings.SNAPSHOT_DIR = str(tmp_path / "snapshots")


def first_object(model: type) -> Any:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"No {model._meta.label} row: create one in make_objects() so its admin pages are checked."
    return obj


def model_admin_cases(users: dict[str, Any]) -> dict[str, list[Case]]:
    """The admin pages of every registered model. Staff get what the model's ModelAdmin allows them
    (the view-only users: never add, change or delete; checked on its own below); anonymous and
    non-staff users are sent to the login form."""
    factory = RequestFactory()

    def request_of(user: str):
        request = factory.get("/admin/")
        request.user = users[user]
        return request

    cases: dict[str, list[Case]] = {}
    for key, (model, view) in admin_model_keys().items():
        model_admin = admin.site._registry[model]
        obj = first_object(model)
        app, name = model._meta.app_label, model._meta.model_name
        allowed = {
            "changelist": lambda r, o, ma=model_admin: ma.has_view_or_change_permission(r),
            "add": lambda r, o, ma=model_admin: ma.has_add_permission(r),
            "change": lambda r, o, ma=model_admin: ma.has_view_or_change_permission(r, o),
            "delete": lambda r, o, ma=model_admin: ma.has_delete_permission(r, o),
            "history": lambda r, o, ma=model_admin: ma.has_view_or_change_permission(r, o),
        }
        if view == "redirect":
            change = reverse(f"admin:{app}_{name}_change", args=[quote(obj.pk)])
            path = f"/admin/{app}/{name}/{quote(obj.pk)}/"
            cases[key] = [Case(path, {u: ("to", change) if u in STAFF else LOGIN for u in USERS})]
            continue
        args = [] if view in ("changelist", "add") else [quote(obj.pk)]
        path = reverse(f"admin:{app}_{name}_{view}", args=args)
        expected = {
            user: LOGIN if user not in STAFF else 200 if allowed[view](request_of(user), obj) else 403 for user in USERS
        }
        cases[key] = [Case(path, expected)]
        if view in ("add", "change", "delete"):
            # The state-changing POSTs: refused to everyone the admin refuses; a superuser's POST is
            # not sent (it would change data), the GET above proved the page answers.
            post = {user: outcome if outcome in (LOGIN, 403) else None for user, outcome in expected.items()}
            cases[key].append(Case(path, post, method="POST", data={"post": "yes"}))
    return cases


def clients(users: dict[str, Any]) -> dict[str, Client]:
    logged_in = {"anonymous": Client()}
    for name, user in users.items():
        logged_in[name] = Client()
        logged_in[name].force_login(user)
    return logged_in


def outcome_of(response) -> Outcome:
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(reverse("admin:login") + "?next="):
            return LOGIN
        return ("to", location)
    return response.status_code


# --- Tests ---------------------------------------------------------------------------------------


def test_every_url_has_an_expectation():
    """A URL pattern nobody decided about fails here, by name."""
    known = set(EXPECTED) | set(admin_model_keys())
    served = dict(served_patterns())
    missing = sorted(f"{key}  ({route})" for key, route in served.items() if key not in known)
    assert not missing, (
        "URL patterns without an expectation in tests/test_permission_matrix.py "
        "(add them to EXPECTED with who may use them):\n  " + "\n  ".join(missing)
    )
    gone = sorted(set(EXPECTED) - set(served))
    assert not gone, f"EXPECTED names URLs the project no longer serves: {gone}"


@pytest.mark.django_db(databases=HIVE_DATABASES)
def test_view_only_staff_can_change_nothing_in_the_admin():
    """Independent of the matrix below: view permissions never let anyone add, change or delete."""
    users = make_users()
    make_objects(users)
    request = RequestFactory().get("/admin/")
    allowed = []
    for role in ("viewer", "restarter", "bare_staff"):
        request.user = users[role]
        for model, model_admin in admin.site._registry.items():
            obj = first_object(model)
            for action, check in (
                ("add", model_admin.has_add_permission(request)),
                ("change", model_admin.has_change_permission(request, obj)),
                ("delete", model_admin.has_delete_permission(request, obj)),
            ):
                if check:
                    allowed.append(f"{role} may {action} {model._meta.label}")
    assert allowed == []


@pytest.mark.django_db(databases=HIVE_DATABASES)
def test_every_url_answers_each_user_as_expected(nats_url):
    from supervision.models import SupervisionRestart

    users = make_users()
    objects = make_objects(users)
    served = dict(served_patterns())
    cases: list[Case] = []
    for key, build in EXPECTED.items():
        if key in served:
            cases.extend(build(objects))
    for model_cases in model_admin_cases(users).values():
        cases.extend(model_cases)
    logged_in = clients(users)
    restarts_before = SupervisionRestart.objects.count()
    rows_before = {model: model._default_manager.count() for model in admin.site._registry}

    wrong, checked = [], 0
    for case in cases:
        for user in USERS:
            want = case.expected[user]
            if want is None:  # not sent for this user (see the case)
                continue
            response = logged_in[user].generic(
                case.method,
                case.path,
                data=_encode(case.data) if case.method == "POST" else "",
                content_type="application/x-www-form-urlencoded",
                **case.extra,
            )
            got = outcome_of(response)
            checked += 1
            if got != want:
                wrong.append(f"{user:>10}  {case.label()}: expected {want}, got {got}")
    assert not wrong, f"{len(wrong)} of {checked} answers differ:\n" + "\n".join(wrong)
    # Nothing the refused (or stale) POSTs asked for happened.
    assert SupervisionRestart.objects.count() == restarts_before
    assert {model: model._default_manager.count() for model in admin.site._registry} == rows_before


def _encode(data: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


@pytest.mark.django_db(databases=HIVE_DATABASES)
def test_state_changing_posts_need_the_csrf_token():
    """With CSRF checks on (as browsers get them), a POST without the token is refused even for a
    user who may do the action, and nothing changes."""
    from supervision.models import SupervisionPolicy, SupervisionRestart

    users = make_users()
    objects = make_objects(users)
    restarter = Client(enforce_csrf_checks=True)
    restarter.force_login(users["restarter"])
    page = restarter.get(reverse("supervision:restart", args=[objects["node"].pk]))
    assert page.status_code == 200
    fingerprint = page.context["plan"].fingerprint
    before = SupervisionRestart.objects.count()
    refused = restarter.post(reverse("supervision:restart", args=[objects["node"].pk]), {"fingerprint": fingerprint})
    assert refused.status_code == 403 and b"CSRF" in refused.content
    assert SupervisionRestart.objects.count() == before

    superuser = Client(enforce_csrf_checks=True)
    superuser.force_login(users["superuser"])
    policy = SupervisionPolicy.objects.first()
    delete = reverse("admin:supervision_supervisionpolicy_delete", args=[quote(policy.pk)])
    assert superuser.post(delete, {"post": "yes"}).status_code == 403
    assert SupervisionPolicy.objects.filter(pk=policy.pk).exists()
    command = reverse("agent_pages:command", args=[objects["agent"].pk])
    assert superuser.post(command, {"command": "status"}).status_code == 403


@pytest.mark.django_db(databases=HIVE_DATABASES)
def test_bulk_restart_action_is_offered_to_restarters_only():
    from supervision.models import SupervisionRestart

    users = make_users()
    objects = make_objects(users)
    url = reverse("admin:supervision_supervisionnode_changelist")
    action = {"action": "restart_selected", "_selected_action": str(objects["node"].pk), "index": "0"}
    before = SupervisionRestart.objects.count()
    templates = {}
    for role in ("viewer", "restarter", "superuser"):
        client = Client()
        client.force_login(users[role])
        response = client.post(url, action)
        assert response.status_code == 200, role
        templates[role] = "supervision/restart_bulk_confirm.html" in [t.name for t in response.templates]
    assert templates == {"viewer": False, "restarter": True, "superuser": True}
    assert SupervisionRestart.objects.count() == before


# --- WebSocket topics ----------------------------------------------------------------------------

# Every topic and the permission it needs: a new topic in consumers.TOPIC_PERMISSIONS fails
# test_every_topic_has_an_expectation until it is decided here.
TOPICS = {
    "agents": "agents.view_agent",
    "supervision": "supervision.view_supervisionnode",
    "discoveries": "agents.view_discovery",
    "events": "mistersmith.view_event_log",
    "system": "agents.view_agent",
}
AGENT_TOPIC = f"agent.{uuid.UUID(int=7)}"


def test_every_topic_has_an_expectation():
    assert consumers.TOPIC_PERMISSIONS == TOPICS
    assert consumers.topic_permission(AGENT_TOPIC) == "agents.view_agent"
    assert consumers.topic_permission("agent.not-a-uuid") is None


@sync_to_async
def session_cookies() -> dict[str, bytes | None]:
    users = make_users()
    cookies: dict[str, bytes | None] = {"anonymous": None}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        cookies[name] = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    return cookies


@pytest.mark.django_db(transaction=True)
async def test_every_websocket_topic_answers_each_user_as_expected():
    cookies = await session_cookies()
    wanted = [*TOPICS, AGENT_TOPIC, "no-such-topic", "agent.not-a-uuid"]
    wrong = []
    for user in USERS:
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if cookies[user]:
            headers.append((b"cookie", cookies[user]))
        socket = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, code = await socket.connect()
        if user not in STAFF:
            if connected or code != consumers.REFUSED:
                wrong.append(f"{user}: the handshake should be refused, got connected={connected} code={code}")
            await socket.disconnect()
            continue
        if not connected:
            wrong.append(f"{user}: refused at the handshake (code {code})")
            continue
        await socket.send_json_to({"subscribe": wanted})
        answer = await _answer(socket)
        expected = sorted(
            [t for t, p in TOPICS.items() if has(user, p)] + ([AGENT_TOPIC] if has(user, "agents.view_agent") else [])
        )
        if answer.get("subscribed") != expected:
            wrong.append(f"{user}: subscribed {answer.get('subscribed')}, expected {expected}")
        if not {"no-such-topic", "agent.not-a-uuid"} <= set(answer.get("refused", [])):
            wrong.append(f"{user}: unknown topics not refused: {answer}")
        await socket.disconnect()
    assert not wrong, "\n".join(wrong)


async def _answer(socket: WebsocketCommunicator) -> dict[str, Any]:
    """The answer to the subscription (status messages such as the bridge's may come first)."""
    while True:
        message = await socket.receive_json_from(timeout=10)
        if "subscribed" in message or "error" in message:
            return message
