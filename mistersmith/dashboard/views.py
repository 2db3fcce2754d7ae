"""The dashboard page and its JSON snapshot.

The page is an admin view (anonymous and non-staff users go to the login page); it renders the
panels the user may see, empty, and ``dashboard.js`` fills them from the snapshot and the live
topics. The snapshot answers API-style: 401/403 as JSON, 400 for an unknown part.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from agents.lifecycle import AgentState
from mistersmith.dashboard import panels
from mistersmith.dashboard.freshness import page_freshness
from mistersmith.live import live_page_context
from mistersmith.nats import NatsUnavailable
from supervision.models import NodeStatus

View = Callable[..., HttpResponse]

# How often the page asks for what changes without an event (stream figures, the console's pool).
POLL_SECONDS = 5
# At most one re-read of a part per this many seconds, however many events make it stale.
REFETCH_SECONDS = 1


@require_safe
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
    }
    series = [
        (name, label)
        for name, label, permission in (
            ("failures", "Failures", panels.VIEW_FAILURE),
            ("restarts", "Restarts", panels.VIEW_RESTART),
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
    )
    return TemplateResponse(request, "mistersmith/dashboard.html", context)


page = admin.site.admin_view(dashboard_page)


def json_staff_required(view: View) -> View:
    """401 for anonymous callers and 403 for non-staff ones, as JSON (an API answers, never redirects)."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return JsonResponse({"error": "Log in first."}, status=401)
        if not (user.is_active and user.is_staff):
            return JsonResponse({"error": "Only staff may see the dashboard."}, status=403)
        return view(request, *args, **kwargs)

    return checked


@never_cache
@require_safe
@json_staff_required
def snapshot(request: HttpRequest) -> JsonResponse:
    """``?parts=agents,rates`` (none: every part the user may see), with the stream positions."""
    try:
        parts = panels.parse_parts(request.GET.get("parts"), request.user)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    except PermissionError as error:
        return JsonResponse({"error": str(error)}, status=403)
    return JsonResponse(panels.build_snapshot(request.user, parts))


@never_cache
@require_safe
@json_staff_required
def freshness(request: HttpRequest) -> JsonResponse:
    """Per bridge feed, how far the pages' data is behind the stream head (every live page polls it)."""
    try:
        return JsonResponse(page_freshness())
    except NatsUnavailable as error:
        return JsonResponse({"error": f"The streams cannot be read now: {error}"}, status=503)
