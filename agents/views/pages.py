"""The live agents pages (list and detail), their snapshots, and the command endpoint.

Thin shells: access, input, one selector or service, the answer. The pages are admin views (login
and staff, else the login page) that need ``agents.view_agent`` (403 without). The JSON endpoints
answer 401/403/400 as JSON with an ``error`` text instead of redirecting, and are never cached. A
snapshot reads its data and the stream positions in one transaction, so the page can drop exactly
the live events the snapshot already shows (mistersmith/live/static/mistersmith/live.js).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST, require_safe

from agents import commands, history, selectors, texts
from agents.lifecycle import AgentState
from agents.models import (
    Agent,
    AgentAnomaly,
    AgentCommand,
    AgentCommandRecord,
    AgentInstance,
    InteractiveSession,
    SessionMessage,
)
from agents.silence import silent_seconds
from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.jetstream.messages import readable_payload
from mistersmith.jetstream.reader import read_message
from mistersmith.live.positions import stream_positions
from mistersmith.web.access import admin_page, hidden_parts, json_endpoint, live_page_context, may_view
from supervision.views.tree import node_tree_url

VIEW_PERMISSION = "agents.view_agent"
NODE_VIEW_PERMISSION = "supervision.view_supervisionnode"
URL_PLACEHOLDER = uuid.UUID(int=0)
HISTORY_COUNT = 100
View = Callable[..., HttpResponse]


page_view = admin_page(VIEW_PERMISSION)


def json_view(permission: str = VIEW_PERMISSION) -> Callable[[View], View]:
    """A JSON endpoint: 401 unless logged in as active staff, 403 without the view permission and
    ``permission``, never cached (mistersmith.web.access)."""
    permissions = dict.fromkeys((VIEW_PERMISSION, permission))  # once each, in this order
    return json_endpoint(*permissions, non_staff_status=401)


def _urls() -> dict[str, str]:
    """The pages' links as templates with ``placeholder`` for an id (one reverse each, not one per row)."""
    return {
        "placeholder": str(URL_PLACEHOLDER),
        "detail": reverse("agent_pages:detail", args=[URL_PLACEHOLDER]),
        "tree": reverse("agent_pages:tree", args=[URL_PLACEHOLDER]),
        "detailSnapshot": reverse("agent_pages:detail_snapshot", args=[URL_PLACEHOLDER]),
        "command": reverse("agent_pages:command", args=[URL_PLACEHOLDER]),
        "text": reverse("agent_pages:text", args=[URL_PLACEHOLDER]),
        "payload": reverse("agent_pages:payload", args=[URL_PLACEHOLDER]),
        "admin": reverse("admin:agents_agent_change", args=[URL_PLACEHOLDER]),
        "node": node_tree_url(URL_PLACEHOLDER),
        "list": reverse("agent_pages:list"),
        "listSnapshot": reverse("agent_pages:list_snapshot"),
        "commandLog": reverse("admin:agents_agentcommandrecord_changelist"),
        "bulkRun": reverse("agent_pages:bulk_run", args=[URL_PLACEHOLDER]),
    }


@page_view
def agent_list(request: HttpRequest) -> HttpResponse:
    """The page's frame: filters and an empty table that live_list.js fills from the snapshot."""
    try:
        filters = selectors.ListFilter.from_query(request.GET)
        error = ""
    except ValueError as problem:
        filters, error = selectors.ListFilter(), str(problem)
    config = {"urls": _urls(), "query": request.GET.dict() if not error else {}, "silentSeconds": silent_seconds()}
    config["mayCommand"] = request.user.has_perm(commands.PERMISSION)  # the bulk actions (agents.bulk)
    context = live_page_context(
        request,
        "Live agents",
        filters=filters,
        filter_error=error,
        state_choices=AgentState.choices,
        page_config=config,
    )
    return TemplateResponse(request, "agents/live_list.html", context)


@json_view()
@require_safe
def agent_list_snapshot(request: HttpRequest) -> JsonResponse:
    """One page of agents (``state``, ``q``, ``after`` or ``before``) and the stream positions it reflects."""
    try:
        filters = selectors.ListFilter.from_query(request.GET)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    with transaction.atomic():
        page = selectors.agent_page(filters)
        positions = stream_positions()
    body = {**page.as_json(), "positions": positions}
    if may_view(request, AgentCommandRecord):  # each row's newest command and its outcome
        body["commands"] = selectors.recent_commands([row["id"] for row in page.rows])
    return JsonResponse(body)


def _agent_or_404(agent_id: uuid.UUID) -> Agent:
    agent = selectors.agent_with_facts(agent_id)
    if agent is None:
        raise Http404("There is no agent with this id.")
    return agent


@page_view
def agent_detail(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    agent = _agent_or_404(agent_id)
    may_command = request.user.has_perm(commands.PERMISSION)
    config = {
        "agentId": str(agent.pk),
        "urls": _urls(),
        "mayCommand": may_command,
        "commands": {
            # What the console allows from which state: the buttons follow it, the server checks again.
            command: sorted(allowed) if allowed is not None else None
            for command, allowed in commands.ALLOWED_FROM.items()
        },
        "restartUrl": _node_restart_url(request, agent),
        "restartStates": RESTART_STATES,
        "defaultStopTimeout": commands.default_stop_timeout(agent),
        "maxStopTimeout": commands.MAX_STOP_TIMEOUT_SECONDS,
    }
    context = live_page_context(request, f"Agent {agent.name}", agent=agent, page_config=config)
    return TemplateResponse(request, "agents/live_detail.html", context)


# An agent in these states is brought back by restarting its supervision node (the supervisor
# starts a new incarnation): its page offers that restart to those who may ask for it.
RESTART_STATES = [AgentState.ERROR.value, AgentState.TERMINATED.value]
RESTART_PERMISSION = "supervision.restart_node"


def _node_restart_url(request: HttpRequest, agent: Agent) -> str | None:
    """The restart page of the agent's node, coming back to this agent; None without a node or the right."""
    if agent.supervision_node_id is None or not request.user.has_perm(RESTART_PERMISSION):
        return None
    back = reverse("agent_pages:detail", args=[agent.pk])
    return f"{reverse('supervision:restart', args=[agent.supervision_node_id])}?{urlencode({'next': back})}"


@page_view
def agent_in_tree(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    """The agent's place in the supervision tree: its node, selected (for links that hold only an
    agent id: events, discoveries, anomalies, dead letters). 404 when the agent has no node."""
    if not request.user.has_perm(NODE_VIEW_PERMISSION):
        raise PermissionDenied
    node_id = Agent.objects.filter(pk=agent_id).values_list("supervision_node_id", flat=True).first()
    if node_id is None:
        raise Http404("This agent has no supervision node (or there is no such agent).")
    return HttpResponseRedirect(node_tree_url(node_id))


@json_view()
@require_safe
def agent_detail_snapshot(request: HttpRequest, agent_id: uuid.UUID) -> JsonResponse:
    """The agent's facts, instances, sessions, anomalies and commands (database), its newest events
    (the AGENT_EVENTS stream) and the positions. With NATS away the history is empty and says why."""
    hidden = detail_hidden_parts(request)
    with transaction.atomic():
        agent = selectors.agent_with_facts(agent_id)
        if agent is None:
            return JsonResponse({"error": "There is no agent with this id."}, status=404)
        details = selectors.agent_details(agent, hidden)
        positions = stream_positions()
    events: list[dict[str, Any]] = []
    history_error = hidden.get("history")
    if history_error is None:
        try:
            events = history.agent_history(agent.pk, HISTORY_COUNT)
        except NatsUnavailable as error:
            history_error = f"The event history could not be read: {error}"
    return JsonResponse(
        {**details, "history": events, "history_error": history_error, "hidden": hidden, "positions": positions}
    )


# The detail snapshot's parts that have a model of their own: shown only to whom the admin shows it.
PART_MODELS = {
    "instances": AgentInstance,
    "sessions": InteractiveSession,
    "messages": SessionMessage,
    "anomalies": AgentAnomaly,
    "commands": AgentCommandRecord,
}
EVENT_LOG_PERMISSION = "mistersmith.view_event_log"


def detail_hidden_parts(request: HttpRequest) -> dict[str, str]:
    """The detail snapshot's parts this user may not see, each with the sentence the page shows in its
    place. A part follows its model's admin permission (mistersmith.web.access.may_view); the history is
    the stream's stored messages, raw ones included, so it needs the event log's permission."""
    hidden = hidden_parts(request, PART_MODELS)
    if not request.user.has_perm(EVENT_LOG_PERMISSION):
        hidden["history"] = "Hidden: the stored event history needs the permission to watch the event log."
    return hidden


def _positive_int(value: str | None, name: str) -> int:
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) < 1:
        raise ValueError(f"{name} must be a whole number from 1.")
    return int(text)


@json_view()
@require_safe
def agent_text(request: HttpRequest, agent_id: uuid.UUID) -> JsonResponse:
    """The whole of a text the page shows cut (agents.texts): ``sequence`` names one of the
    agent's events in AGENT_EVENTS (Output, Error), ``message`` one of its session messages.
    Same access as the page (a session message: as the admin's session messages, else 403); 400
    bad input, 404 no such text, 503 NATS away. The text is JSON: the page puts it in the document
    as text, never as HTML. An event's text stays the page's: the agent's topic brings the same
    Output and Error texts live to whoever may see the agent."""
    if request.GET.get("message") and not may_view(request, SessionMessage):
        return JsonResponse({"error": "You may not view session messages."}, status=403)
    try:
        if request.GET.get("message"):
            text = texts.session_message_text(agent_id, _positive_int(request.GET.get("message"), "message"))
        else:
            text = texts.event_text(agent_id, _positive_int(request.GET.get("sequence"), "sequence"))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    except texts.TextNotFound as error:
        return JsonResponse({"error": str(error)}, status=404)
    except NatsUnavailable as error:
        return JsonResponse({"error": f"The stream could not be read: {error}"}, status=503)
    return JsonResponse({"text": text, "length": len(text)})


@json_view(EVENT_LOG_PERMISSION)
@require_safe
def agent_payload(request: HttpRequest, agent_id: uuid.UUID) -> JsonResponse:
    """One of the agent's stored messages whole and readable (``sequence`` in AGENT_EVENTS): its
    payload as ``text``, pretty JSON when ``json``. The raw message, so it needs the event log's
    permission, as the stored history does; 400 bad input, 404 not this agent's or gone, 503 NATS away."""
    try:
        sequence = _positive_int(request.GET.get("sequence"), "sequence")
        message = read_message(history.STREAM, sequence)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    except NatsUnavailable as error:
        return JsonResponse({"error": f"The stream could not be read: {error}"}, status=503)
    if message is None or not message.subject.startswith(f"agent.{agent_id}."):
        return JsonResponse({"error": f"Message {sequence} is not one of this agent's stored events."}, status=404)
    return JsonResponse(
        {
            "sequence": message.sequence,
            "subject": message.subject,
            "size": message.size,
            **readable_payload(message.data),
        }
    )


def _flag(value: str | None, default: bool) -> bool:
    if value in (None, ""):
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("0", "false", "off", "no"):
        return False
    raise ValueError("graceful must be true or false.")


ERROR_STATUS = {
    commands.CommandRefused: 409,
    commands.BadReply: 502,
    commands.RuntimeUnavailable: 503,
    commands.CommandTimeout: 504,
}


@json_view(commands.PERMISSION)
@require_POST
@csrf_protect
def agent_command(request: HttpRequest, agent_id: uuid.UUID) -> JsonResponse:
    """Send a command (``command``: pause, resume, stop, status, health_check; for stop ``graceful``
    and ``timeout`` in seconds) and answer with the runtime's response or why there is none:
    200 with the response (its ``success`` may be false: the runtime refused), 400 bad input,
    409 refused by the console before sending, 502 unreadable answer, 503 NATS or runtime away,
    504 no answer in time."""
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        return JsonResponse({"error": "There is no agent with this id."}, status=404)
    try:
        command = commands.normalise_command(request.POST.get("command", ""))
        graceful = _flag(request.POST.get("graceful"), True)
        timeout = request.POST.get("timeout") or None
        if timeout is not None and command != AgentCommand.STOP:
            raise ValueError("Only stop takes a timeout.")
        result = commands.send_agent_command(request.user, agent, command, graceful=graceful, timeout_s=timeout)
    except PermissionDenied as error:
        return JsonResponse({"error": str(error) or "You may not send commands to agents."}, status=403)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    except commands.CommandError as error:
        body = {"error": str(error), "outcome": error.outcome, "record_id": error.record.pk if error.record else None}
        return JsonResponse(body, status=ERROR_STATUS.get(type(error), 500))
    return JsonResponse(
        {
            "outcome": result.record.outcome,
            "command": command,
            "response": result.response.as_json(),
            "summary": result.summary,  # what the reply means, in words
            "state": result.state,  # the agent's state in the console once the reply was applied
            "record_id": result.record.pk,
        }
    )
