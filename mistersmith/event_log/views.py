"""The event log page and its JSON endpoints.

Access: staff with ``mistersmith.view_event_log`` (the raw runtime messages are their own right,
apart from any model's view permission). The page sends anonymous users to the login form and
answers 403 to everyone else without the right; the JSON endpoints answer 401/403 as JSON, so a
page whose session expired shows the reason instead of parsing a login form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from mistersmith.event_log.queries import DEFAULT_LIMIT, SNAPSHOT_SIZE, ReplayQuery, snapshot
from mistersmith.live import live_page_context
from mistersmith.nats import NatsUnavailable
from mistersmith.stream_reader import MAX_LIMIT, stream_names

PERMISSION = "mistersmith.view_event_log"
LIVE_ROWS = 500  # the live tail keeps at most this many rows in the page

View = Callable[..., HttpResponse]


def _allowed(request: HttpRequest) -> bool:
    user = request.user
    return user.is_active and user.is_staff and user.has_perm(PERMISSION)


def page_view(view: View) -> View:
    """Anonymous: to the login form; logged in without staff and the permission: 403."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not _allowed(request):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return never_cache(require_safe(checked))


def json_view(view: View) -> View:
    """401/403 as JSON, reads only, never cached."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Log in first."}, status=401)
        if not _allowed(request):
            return JsonResponse({"error": "You may not see the event log."}, status=403)
        try:
            return view(request, *args, **kwargs)
        except NatsUnavailable as error:
            return JsonResponse({"error": f"The streams cannot be read now: {error}"}, status=503)

    return never_cache(require_safe(checked))


@page_view
def event_log_page(request: HttpRequest) -> HttpResponse:
    """The page: the live tail (snapshot, then the "events" topic) and the replay form."""
    config = {
        "snapshotUrl": reverse("event_log:snapshot"),
        "replayUrl": reverse("event_log:replay"),
        "streams": stream_names(),
        "maxRows": LIVE_ROWS,
    }
    context = live_page_context(
        request,
        "Event log",
        streams=stream_names(),
        event_log_config=config,
        default_limit=DEFAULT_LIMIT,
        max_limit=MAX_LIMIT,
        live_rows=LIVE_ROWS,
        snapshot_size=SNAPSHOT_SIZE,
    )
    return TemplateResponse(request, "mistersmith/event_log.html", context)


@json_view
def event_log_snapshot(request: HttpRequest) -> HttpResponse:
    """The newest events across the streams and the per-stream positions they reach."""
    return JsonResponse(snapshot())


@json_view
def event_log_replay(request: HttpRequest) -> HttpResponse:
    """A page of one stream's retained history: ``?stream=&subject=&start_sequence=|start_time=&limit=``."""
    try:
        query = ReplayQuery.from_query(request.GET)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(query.read())
