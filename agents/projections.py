"""The console's projection of agent events: state (through the lifecycle), heartbeats and
session output (an agent's Output is appended to its open interactive session).

A batch is applied in one transaction. A move the lifecycle forbids is not applied: it becomes
an :class:`~agents.models.AgentAnomaly`. Replays are harmless because the bridge skips stream
sequences it has already applied (see mistersmith.bridge) and heartbeats only move forward.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from django.db import connection, transaction
from django.db.models import Max
from django.db.models.functions import Now
from django.utils import timezone

from agents.events import AgentEvent
from agents.lifecycle import AgentState, IllegalTransition, check_transition
from agents.models import DEFAULT_MODEL, Agent, AgentAnomaly, InteractiveSession, SessionMessage, SessionState

OPEN_SESSION_STATES = (SessionState.STARTING, SessionState.READY, SessionState.PROCESSING)

CONFIG_FIELDS = {"model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"}


def _target_state(event: AgentEvent) -> str | None:
    if event.kind == "StateChanged":
        return event.new_state
    if event.kind == "Terminated":
        return AgentState.TERMINATED
    if event.kind == "Error":
        return AgentState.ERROR
    return None


def _spawn(event: AgentEvent) -> Agent:
    config = {key: value for key, value in event.config.items() if key in CONFIG_FIELDS}
    config.setdefault("model", DEFAULT_MODEL)
    name = event.config.get("name") if isinstance(event.config.get("name"), str) else f"agent-{str(event.agent_id)[:8]}"
    agent, _ = Agent.objects.get_or_create(pk=event.agent_id, defaults={"name": name, **_valid_config(config)})
    return agent


def _valid_config(config: dict) -> dict:
    """Config values of the right type only: a wrong one keeps the column's default."""
    checks = {
        "model": str,
        "max_turns": int,
        "allowed_tools": list,
        "enable_mcp": bool,
        "timeout_seconds": int,
        "memory_limit_mb": int,
    }
    return {key: value for key, value in config.items() if isinstance(value, checks[key])}


def apply_agent_events(
    events: Iterable[tuple[int | None, AgentEvent]],
    on_applied: Callable[[int | None, AgentEvent, str], None] | None = None,
) -> Counter:
    """Apply (stream sequence, event) pairs in order, in one transaction; count what happened.

    ``on_applied(sequence, event, result)`` hears each result (the bridge makes frames of them).
    """
    outcome: Counter = Counter()
    latest_beats: dict = {}
    outputs: list[AgentEvent] = []
    with transaction.atomic():
        for sequence, event in events:
            if event.kind == "Heartbeat":  # only the newest per agent matters: one UPDATE for them all
                beat = event.occurred_at or timezone.now()
                latest_beats[event.agent_id] = max(beat, latest_beats.get(event.agent_id, beat))
                result = "heartbeat"
            elif event.kind == "Output":
                outputs.append(event)
                result = "output"
            else:
                result = _apply(sequence, event)
            outcome[result] += 1
            if on_applied is not None:
                on_applied(sequence, event, result)
        _heartbeats(latest_beats)
        outcome["output_without_session"] += len(outputs) - _session_output(outputs)
    if not outcome["output_without_session"]:
        del outcome["output_without_session"]
    return outcome


def _session_output(outputs: list[AgentEvent]) -> int:
    """Append each Output to its agent's newest open session, in order, in three queries whatever the
    batch size; returns how many found a session (the rest are only in the stream and on live pages)."""
    if not outputs:
        return 0
    agent_ids = {event.agent_id for event in outputs}
    open_sessions = (
        InteractiveSession.objects.filter(agent_id__in=agent_ids, state__in=OPEN_SESSION_STATES)
        .order_by("agent_id", "-started_at")
        .distinct("agent_id")
        .values_list("agent_id", "id")
    )
    session_of = dict(open_sessions)
    if not session_of:
        return 0
    next_position = {
        session: (last + 1 if last is not None else 0)
        for session, last in SessionMessage.objects.filter(session_id__in=session_of.values())
        .values("session_id")
        .annotate(last=Max("position"))
        .values_list("session_id", "last")
    }
    messages = []
    for event in outputs:
        session = session_of.get(event.agent_id)
        if session is None:
            continue
        position = next_position.get(session, 0)
        next_position[session] = position + 1
        messages.append(
            SessionMessage(
                session_id=session,
                position=position,
                role="assistant",
                content=event.text or "",
                timestamp=event.occurred_at or timezone.now(),
            )
        )
    SessionMessage.objects.bulk_create(messages)
    return len(messages)


def _apply(sequence: int | None, event: AgentEvent) -> str:
    if event.kind == "Spawned":
        _spawn(event)
        return "spawned"
    target = _target_state(event)
    if target is None:
        return "ignored"
    current = Agent.objects.select_for_update().filter(pk=event.agent_id).values_list("status", flat=True).first()
    if current is None:
        _anomaly(sequence, event, "", target, "event for an agent the console does not know")
        return "anomaly"
    if current == target:  # the runtime wrote the row itself already: nothing to move
        return "in_sync"
    if event.kind == "StateChanged" and event.old_state != current:
        detail = f"the event says it moved from {event.old_state}, the console has it in {current}"
        _anomaly(sequence, event, current, target, detail)
        return "anomaly"
    try:
        check_transition(current, target)
    except IllegalTransition as error:
        _anomaly(sequence, event, current, target, str(error))
        return "anomaly"
    Agent.objects.filter(pk=event.agent_id).update(status=target, state_changed_at=Now(), updated_at=Now())
    return "state_changed"


def _heartbeats(latest: dict) -> None:
    """Move last_heartbeat forward only (a replayed or late heartbeat never moves it back), in one query."""
    if not latest:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE agents a SET last_heartbeat = b.at
              FROM unnest(%s::uuid[], %s::timestamptz[]) AS b(id, at)
             WHERE a.id = b.id AND (a.last_heartbeat IS NULL OR a.last_heartbeat < b.at)
            """,
            [list(latest), list(latest.values())],
        )


def _anomaly(sequence: int | None, event: AgentEvent, current: str, target: str, detail: str) -> None:
    AgentAnomaly.objects.create(
        agent_id=event.agent_id,
        event_kind=event.kind,
        current_state=current,
        attempted_state=target,
        detail=detail,
        stream_sequence=sequence,
    )
