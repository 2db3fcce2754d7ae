"""Read models of the live agents pages: a page of the list, and one agent's facts.

Both answer in a constant number of queries whatever the number of agents, instances, sessions or
messages. The list pages by keyset on (name, id), the order of an index (with or without a state
filter), so page 1,000 of 100,000 agents costs what page 1 costs; its total is exact up to the admin's
limit and the planner's estimate beyond it (mistersmith.web.admin_scale), never a full COUNT(*).

Uptime: for an agent whose process lives (Starting to Stopping, Paused included) it is counted from
the start of its newest instance (a restart is a new incarnation, as the runtime counts
``Agent::uptime``), or from the agent's creation when no instance was recorded; created,
terminated or failed agents have none. ``state_changed_at`` is not used: it moves at every
Running → Processing → Idle step, so it would say how long the agent has been busy, not up.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import BooleanField, Count, F, OuterRef, QuerySet, Subquery, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import Length, RowNumber, Substr
from django.utils import timezone

from agents.lifecycle import ACTIVE_STATES, AgentState
from agents.models import (
    Agent,
    AgentAnomaly,
    AgentCommandRecord,
    AgentInstance,
    InteractiveSession,
    SessionMessage,
)
from agents.silence import LAST_HEARD, is_silent, quiet_since, silent_filter
from agents.texts import PREVIEW_CHARS
from mistersmith.web.admin_scale import EstimatedCountPaginator

PAGE_SIZE = 100
MAX_SEARCH = 200
S = AgentState
# States in which the agent's process lives: they have an uptime.
UP_STATES = frozenset({S.STARTING, S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.STOPPING})
DETAIL_INSTANCES = 20
DETAIL_SESSIONS = 10
MESSAGES_PER_SESSION = 5
DETAIL_ANOMALIES = 20
DETAIL_COMMANDS = 10
# Keyset conditions in the order of the index agents (name, id): a row comparison the index answers.
AFTER_SQL = '("agents"."name", "agents"."id") > (%s, %s::uuid)'
BEFORE_SQL = '("agents"."name", "agents"."id") < (%s, %s::uuid)'


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class ListFilter:
    """The list's filter and position: a state, a name fragment, silent agents only (agents/silence.py),
    and a keyset cursor."""

    state: str = ""
    search: str = ""
    silent: bool = False
    after: tuple[str, str] | None = None
    before: tuple[str, str] | None = None

    @classmethod
    def from_query(cls, query: Any) -> ListFilter:
        """From a query string; ValueError with a message a person can act on for bad values."""
        state = (query.get("state") or "").strip()
        if state and state not in AgentState.values:
            raise ValueError(f"Unknown state {state[:40]!r}; use one of {', '.join(AgentState.values)}.")
        search = (query.get("q") or "").strip()
        if len(search) > MAX_SEARCH:
            raise ValueError(f"Search for at most {MAX_SEARCH} characters.")
        after, before = query.get("after"), query.get("before")
        if after and before:
            raise ValueError("Give after or before, not both.")
        silent = (query.get("silent") or "") in ("1", "true", "on")
        return cls(
            state,
            search,
            silent,
            decode_cursor(after) if after else None,
            decode_cursor(before) if before else None,
        )

    def as_query(self) -> dict[str, str]:
        pairs = (("state", self.state), ("q", self.search), ("silent", "1" if self.silent else ""))
        return {key: value for key, value in pairs if value}


def encode_cursor(name: str, pk: Any) -> str:
    raw = json.dumps([name, str(pk)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (name, id) an encoded cursor holds; ValueError for anything else, crafted shapes such as
    ``["a", 123]`` or ``{"a": 1}`` included (they reach here from the address bar)."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(position, list) or len(position) != 2 or not all(isinstance(v, str) for v in position):
            raise ValueError("The cursor is not [name, id].")
        name, pk = position
        if "\x00" in name:  # PostgreSQL cannot compare text holding NUL
            raise ValueError("NUL in the cursor")
        return name, str(uuid.UUID(pk))
    except (ValueError, TypeError, RecursionError, binascii.Error) as error:
        raise ValueError("The page cursor is not valid; start again from the first page.") from error


def _filtered(filters: ListFilter) -> QuerySet:
    agents = Agent.objects.all()
    if filters.state:
        agents = agents.filter(status=filters.state)
    if filters.search:
        agents = agents.filter(name__icontains=filters.search)
    if filters.silent:
        agents = agents.alias(last_heard=LAST_HEARD).filter(silent_filter())
    return agents


def matching_agents(filters: ListFilter) -> QuerySet:
    """Every agent the list's state and name filter match, whatever page the list is on (bulk actions)."""
    return _filtered(filters)


def _newest_instance_start() -> Subquery:
    """The start of the agent's newest instance (index agent_instances (agent_id, started_at DESC))."""
    newest = AgentInstance.objects.filter(agent_id=OuterRef("pk")).order_by("-started_at").values("started_at")[:1]
    return Subquery(newest)


def agent_row(agent: Agent, since: Any = None) -> dict[str, Any]:
    """One agent as the list and the detail page draw it (``instance_started`` annotated); ``silent``
    by agents/silence.py with the threshold ``since`` (read now when not given)."""
    up = agent.status in UP_STATES
    node = agent.supervision_node
    return {
        "id": str(agent.pk),
        "name": agent.name,
        "agent_type": agent.agent_type,
        "status": agent.status,
        "active": agent.status in ACTIVE_STATES,
        "up_since": _iso(getattr(agent, "instance_started", None) or agent.created_at) if up else None,
        "state_changed_at": _iso(agent.state_changed_at),
        "last_heartbeat": _iso(agent.last_heartbeat),
        "silent": is_silent(agent.status, agent.last_heartbeat, agent.state_changed_at, since or quiet_since()),
        "created_at": _iso(agent.created_at),
        "config": {
            "model": agent.model,
            "max_turns": agent.max_turns,
            "timeout_seconds": agent.timeout_seconds,
            "memory_limit_mb": agent.memory_limit_mb,
            "enable_mcp": agent.enable_mcp,
            "allowed_tools": agent.allowed_tools,
        },
        "node": {"id": str(node.pk), "name": node.node_id, "status": node.status} if node is not None else None,
    }


@dataclass
class AgentPage:
    rows: list[dict[str, Any]]
    total: int
    total_is_estimate: bool
    next_cursor: str | None = None
    previous_cursor: str | None = None
    first_page: bool = True
    filters: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "agents": self.rows,
            "total": self.total,
            "total_is_estimate": self.total_is_estimate,
            "page_size": PAGE_SIZE,
            "next": self.next_cursor,
            "previous": self.previous_cursor,
            "first_page": self.first_page,
            "filters": self.filters,
        }


def agent_page(filters: ListFilter) -> AgentPage:
    """One page of agents by name: 2 to 3 queries (count, rows; the planner's estimate past the limit)."""
    since = quiet_since()
    matching = _filtered(filters)
    counter = EstimatedCountPaginator(matching, PAGE_SIZE)  # it counts without the ordering
    rows = matching.select_related("supervision_node").annotate(instance_started=_newest_instance_start())
    cursor = filters.after or filters.before
    if cursor is not None:
        keyset = AFTER_SQL if filters.after else BEFORE_SQL  # values are bound parameters, never SQL text
        rows = rows.filter(RawSQL(keyset, cursor, output_field=BooleanField()))  # noqa: S611
    ordering = ["-name", "-id"] if filters.before else ["name", "id"]
    found = list(rows.order_by(*ordering)[: PAGE_SIZE + 1])
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    if filters.before:
        found.reverse()
    page = AgentPage(
        rows=[agent_row(agent, since) for agent in found],
        total=counter.count,
        total_is_estimate=counter.is_estimate,
        filters=filters.as_query(),
    )
    has_previous = bool(filters.after) or (bool(filters.before) and more)
    has_next = bool(filters.before) or (not filters.before and more)
    page.first_page = not has_previous
    if found and has_next:
        page.next_cursor = encode_cursor(found[-1].name, found[-1].pk)
    if found and has_previous:
        page.previous_cursor = encode_cursor(found[0].name, found[0].pk)
    return page


def agent_with_facts(agent_id: uuid.UUID) -> Agent | None:
    return (
        Agent.objects.select_related("supervision_node")
        .annotate(instance_started=_newest_instance_start())
        .filter(pk=agent_id)
        .first()
    )


def _sessions(agent_id: uuid.UUID, *, with_messages: bool = True) -> list[dict[str, Any]]:
    """The newest sessions, each with its message count and newest messages (two queries; one
    without the messages)."""
    sessions = list(
        InteractiveSession.objects.filter(agent_id=agent_id)
        .annotate(message_total=Count("messages"))
        .order_by("-started_at")[:DETAIL_SESSIONS]
    )
    newest = (
        SessionMessage.objects.filter(session__in=[s.pk for s in sessions])
        .annotate(rank=Window(RowNumber(), partition_by=[F("session_id")], order_by=F("position").desc()))
        .filter(rank__lte=MESSAGES_PER_SESSION)
        .order_by("session_id", "position")
        # a preview and the length from the database: a message may hold a whole 1 MiB Output
        .annotate(content_preview=Substr("content", 1, PREVIEW_CHARS), content_length=Length("content"))
        .defer("content")
    )
    messages: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for message in newest if with_messages else ():
        messages.setdefault(message.session_id, []).append(
            {
                "id": message.pk,
                "position": message.position,
                "role": message.role,
                "content": message.content_preview,
                "content_length": message.content_length,  # more than the preview: the page offers the rest
                "timestamp": _iso(message.timestamp),
            }
        )
    return [
        {
            "id": str(session.pk),
            "state": session.state,
            "error": session.error,
            "pid": session.pid,
            "model": session.model,
            "started_at": _iso(session.started_at),
            "ended_at": _iso(session.ended_at),
            "message_total": session.message_total,
            "messages": messages.get(session.pk, []),
        }
        for session in sessions
    ]


def agent_details(agent: Agent, hidden: Collection[str] = ()) -> dict[str, Any]:
    """Everything the detail page shows from the database, in six queries whatever the agent holds.

    ``hidden`` names the parts this user may not see ("instances", "sessions", "messages",
    "anomalies", "commands"): they are not read, and come back empty."""

    def rows(part: str, queryset: Any, row: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
        return [] if part in hidden else [row(record) for record in queryset]

    instances = rows(
        "instances",
        AgentInstance.objects.filter(agent_id=agent.pk).order_by("-started_at")[:DETAIL_INSTANCES],
        lambda instance: {
            "id": str(instance.pk),
            "status": instance.status,
            "host_name": instance.host_name,
            "port": instance.port,
            "last_heartbeat": _iso(instance.last_heartbeat),
            "started_at": _iso(instance.started_at),
        },
    )
    anomalies = rows(
        "anomalies",
        AgentAnomaly.objects.filter(agent_id=agent.pk).order_by("-recorded_at")[:DETAIL_ANOMALIES],
        lambda anomaly: {
            "recorded_at": _iso(anomaly.recorded_at),
            "event_kind": anomaly.event_kind,
            "current_state": anomaly.current_state,
            "attempted_state": anomaly.attempted_state,
            "detail": anomaly.detail,
            "sequence": anomaly.stream_sequence,
        },
    )
    commands = rows(
        "commands",
        AgentCommandRecord.objects.filter(agent_id=agent.pk).order_by("-requested_at", "-id")[:DETAIL_COMMANDS],
        lambda record: {
            "requested_at": _iso(record.requested_at),
            "command": record.command,
            "outcome": record.outcome,
            "requested_by": record.requested_by_name,
            "detail": record.detail,
        },
    )
    return {
        "agent": agent_row(agent),
        "instances": instances,
        "sessions": _sessions(agent.pk, with_messages="messages" not in hidden) if "sessions" not in hidden else [],
        "anomalies": anomalies,
        "commands": commands,
    }


RECENT_COMMAND_MINUTES = 30


def recent_commands(agent_ids: Collection[uuid.UUID | str]) -> dict[str, dict[str, Any]]:
    """Each agent's newest command of the last RECENT_COMMAND_MINUTES (one query, on the index
    agent_cmd_agent_time_idx): the live list marks its row with the outcome, so a command's result
    (one agent's, or a bulk run's) stays in sight after the reply."""
    if not agent_ids:
        return {}
    since = timezone.now() - timedelta(minutes=RECENT_COMMAND_MINUTES)
    newest = (
        AgentCommandRecord.objects.filter(agent_id__in=list(agent_ids), requested_at__gte=since)
        .order_by("agent_id", "-requested_at", "-id")
        .distinct("agent_id")
        .values("agent_id", "command", "outcome", "detail", "requested_at", "requested_by_name", "bulk_run_id")
    )
    return {
        str(row["agent_id"]): {
            "command": row["command"],
            "outcome": row["outcome"],
            "detail": row["detail"][:300],
            "at": row["requested_at"].isoformat(),
            "by": row["requested_by_name"],
            "bulk_run": str(row["bulk_run_id"]) if row["bulk_run_id"] else None,
        }
        for row in newest
    }
