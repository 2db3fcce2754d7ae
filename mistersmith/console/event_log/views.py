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

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from mistersmith.console.event_log.queries import DEFAULT_LIMIT, MAX_SEQUENCE, SNAPSHOT_SIZE, ReplayQuery, snapshot
from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.jetstream.messages import readable_payload
from mistersmith.jetstream.reader import MAX_LIMIT, read_message, stream_names
from mistersmith.web.access import SAFE_METHODS, admin_page, json_endpoint, live_page_context
from mistersmith.web.links import agent_link_templates

PERMISSION = "mistersmith.view_event_log"
LIVE_ROWS = 500  # the live tail keeps at most this many rows in the page

View = Callable[..., HttpResponse]


# Anonymous: to the login form; logged in without staff and the permission: 403.
page_view = admin_page(PERMISSION, forbid_non_staff=True)


def json_view(view: View) -> View:
    """401/403 as JSON (mistersmith.web.access), reads only, never cached; 503 while NATS is away."""

    @wraps(view)
    def answered(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NatsUnavailable as error:
            return JsonResponse({"error": f"The streams cannot be read now: {error}"}, status=503)

    return json_endpoint(PERMISSION, methods=SAFE_METHODS)(answered)


@page_view
def event_log_page(request: HttpRequest) -> HttpResponse:
    """The page: the live tail (snapshot, then the "events" topic) and the replay form."""
    config = {
        "snapshotUrl": reverse("event_log:snapshot"),
        "replayUrl": reverse("event_log:replay"),
        "messageUrl": reverse("event_log:message"),
        "streams": stream_names(),
        "maxRows": LIVE_ROWS,
        "agentLinks": agent_link_templates(request.user),
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


@json_view
def event_log_message(request: HttpRequest) -> HttpResponse:
    """One whole message, readable: ``?stream=&sequence=`` answers its subject, time, size and its
    payload as ``text`` (pretty JSON when ``json``); 400 bad input, 404 when the stream no longer
    holds it. What a row of the page shows when it is opened."""
    stream = (request.GET.get("stream") or "").strip()
    sequence = (request.GET.get("sequence") or "").strip()
    if not sequence.isascii() or not sequence.isdigit() or not 1 <= int(sequence) <= MAX_SEQUENCE:
        return JsonResponse({"error": "The sequence must be a whole number from 1."}, status=400)
    try:
        message = read_message(stream, int(sequence))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    if message is None:
        return JsonResponse({"error": f"{stream} no longer holds message {sequence}."}, status=404)
    return JsonResponse(
        {
            "stream": message.stream,
            "sequence": message.sequence,
            "subject": message.subject,
            "time": message.time.isoformat() if message.time else None,
            "size": message.size,
            **readable_payload(message.data),
        }
    )
