"""The dashboard page and its JSON snapshot.

The page is an admin view (anonymous and non-staff users go to the login page); it renders the
panels the user may see, empty, and ``dashboard.js`` fills them from the snapshot and the live
topics. The snapshot answers API-style: 401/403 as JSON, 400 for an unknown part.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from agents.lifecycle import AgentState
from mistersmith.console.dashboard import history, panels
from mistersmith.console.dashboard.freshness import page_freshness
from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.web.access import SAFE_METHODS, admin_page, json_endpoint, live_page_context, may_view
from mistersmith.web.links import PLACEHOLDER, agent_link_templates
from supervision.models import NodeStatus, SupervisionNode
from supervision.views.tree import node_tree_url

# How often the page asks for what changes without an event (stream figures, the console's pool).
POLL_SECONDS = 5
# At most one re-read of a part per this many seconds, however many events make it stale.
REFETCH_SECONDS = 1


@admin_page()
def dashboard_page(request: HttpRequest) -> HttpResponse:
    parts = panels.visible_parts(request.user)
    config: dict[str, Any] = {
        "snapshotUrl": reverse("dashboard:snapshot"),
        "parts": parts,
        "topics": panels.live_topics(request.user),
        "eventLog": request.user.has_perm(panels.VIEW_EVENT_LOG),
        "agentStates": list(AgentState.values),
        "nodeStatuses": list(NodeStatus.values),
        "pollSeconds": POLL_SECONDS,
        "refetchSeconds": REFETCH_SECONDS,
        "chartsUrl": reverse("dashboard:charts"),
        "agentLinks": agent_link_templates(request.user),
        "nodeTreeUrl": node_tree_url(PLACEHOLDER) if request.user.has_perm(panels.VIEW_NODE) else None,
        "placeholder": str(PLACEHOLDER),
    }
    series = [
        (name, label, reverse(f"admin:supervision_{model}_changelist"), time_field)
        for name, label, permission, model, time_field in (
            ("failures", "Failures", panels.VIEW_FAILURE, "supervisionfailure", "occurred_at"),
            ("restarts", "Restarts", panels.VIEW_RESTART, "supervisionrestart", "started_at"),
        )
        if request.user.has_perm(permission)
    ]
    context = live_page_context(
        request,
        "Dashboard",
        parts=parts,
        rate_series=series,
        agent_states=AgentState.values,
        node_statuses=NodeStatus.values,
        dashboard_config=config,
        chart_windows=list(history.WINDOWS.values()),
        default_chart_window=history.DEFAULT_WINDOW,
        count_links=count_links(request),
    )
    return TemplateResponse(request, "mistersmith/dashboard.html", context)


page = dashboard_page


def count_links(request: HttpRequest) -> dict[str, str | None]:
    """Where the count panels' numbers lead: the live agents list (``?state=``, the agents panel
    needs the same permission) and the nodes' changelist (``?status__exact=``) for a user the admin
    shows nodes; None where the user could not follow the link."""
    return {
        "agents": reverse("agent_pages:list"),
        "nodes": reverse("admin:supervision_supervisionnode_changelist")
        if may_view(request, SupervisionNode)
        else None,
    }


@json_endpoint(methods=SAFE_METHODS)
def snapshot(request: HttpRequest) -> JsonResponse:
    """``?parts=agents,rates`` (none: every part the user may see), with the stream positions."""
    try:
        parts = panels.parse_parts(request.GET.get("parts"), request.user)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    except PermissionError as error:
        return JsonResponse({"error": str(error)}, status=403)
    return JsonResponse(panels.build_snapshot(request.user, parts))


@json_endpoint(methods=SAFE_METHODS)
def freshness(request: HttpRequest) -> JsonResponse:
    """Per bridge feed, how far the pages' data is behind the stream head (every live page polls it)."""
    try:
        return JsonResponse(page_freshness())
    except NatsUnavailable as error:
        return JsonResponse({"error": f"The streams cannot be read now: {error}"}, status=503)


@json_endpoint(methods=SAFE_METHODS)
def charts(request: HttpRequest) -> JsonResponse:
    """``?window=1h|6h|24h|7d``: failures (by node type and reason) and restarts (by outcome) per
    bucket, each family only with its view permission; 400 for any other window."""
    may_failures = request.user.has_perm(panels.VIEW_FAILURE)
    may_restarts = request.user.has_perm(panels.VIEW_RESTART)
    if not (may_failures or may_restarts):
        return JsonResponse({"error": "You may not see failures or restarts."}, status=403)
    try:
        window = history.parse_window(request.GET.get("window"))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(history.chart_history(window, failures=may_failures, restarts=may_restarts))
