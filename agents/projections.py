"""The console's projection of agent events: state (through the lifecycle), heartbeats and
session output (an agent's Output is appended to its open interactive session).

A batch is applied in one transaction. A move the lifecycle forbids is not applied: it becomes
an :class:`~agents.models.AgentAnomaly`. Replays are harmless because the bridge skips stream
sequences it has already applied (see mistersmith.live.bridge), heartbeats only move forward and an
Output whose stream sequence is already a session message is not appended again. The same code
serves the live bridge and ``manage.py rebuild_projections`` (mistersmith.operations.rebuild).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from operator import attrgetter

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.events import AgentEvent
from agents.lifecycle import AgentState, IllegalTransition, check_transition
from agents.models import DEFAULT_MODEL, Agent, AgentAnomaly, InteractiveSession, SessionMessage, SessionState

OPEN_SESSION_STATES = (SessionState.STARTING, SessionState.READY, SessionState.PROCESSING)
STATE_EVENTS = ("Spawned", "StateChanged", "Terminated", "Error")  # the events that may move a state

CONFIG_FIELDS = {"model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"}


def _target_state(event: AgentEvent) -> str | None:
    if event.kind == "StateChanged":
        return event.new_state
    if event.kind == "Terminated":
        return AgentState.TERMINATED
    if event.kind == "Error":
        return AgentState.ERROR
    return None


def _spawn_fields(event: AgentEvent) -> dict:
    """The columns a Spawned sets: its AgentConfig fields (parse_agent_event kept only values the
    agents table can hold, explicit nulls included: agents/events.py _config)."""
    return {key: value for key, value in event.config.items() if key in CONFIG_FIELDS}


def _new_spawned(event: AgentEvent) -> Agent:
    """The (unsaved) agent of a Spawned the console did not know: Running, with the message's config."""
    config = _spawn_fields(event)
    config.setdefault("model", DEFAULT_MODEL)
    name = event.config.get("name") if isinstance(event.config.get("name"), str) else f"agent-{str(event.agent_id)[:8]}"
    return Agent(pk=event.agent_id, name=name, status=AgentState.RUNNING, **config)


def apply_agent_events(
    events: Iterable[tuple[int | None, AgentEvent]],
    on_applied: Callable[[int | None, AgentEvent, str], None] | None = None,
) -> Counter:
    """Apply (stream sequence, event) pairs in order, in one transaction; count what happened.

    ``on_applied(sequence, event, result)`` hears each result (the bridge makes frames of them).
    """
    events = list(events)
    outcome: Counter = Counter()
    latest_beats: dict = {}
    outputs: list[tuple[int | None, AgentEvent]] = []
    # No savepoint inside a caller's transaction (the bridge's batch): an error fails the whole batch
    # anyway, and a savepoint is two more round trips per batch on the live path.
    with transaction.atomic(savepoint=False):
        states = _States(events)
        for sequence, event in events:
            if event.kind == "Heartbeat":  # only the newest per agent matters: one UPDATE for them all
                beat = event.occurred_at or timezone.now()
                latest_beats[event.agent_id] = max(beat, latest_beats.get(event.agent_id, beat))
                result = "heartbeat"
            elif event.kind == "Output":
                outputs.append((sequence, event))
                result = "output"
            else:
                result = states.apply(sequence, event)
            outcome[result] += 1
            if on_applied is not None:
                on_applied(sequence, event, result)
        states.save(latest_beats)
        outcome["output_without_session"] += len(outputs) - _session_output(outputs)
    if not outcome["output_without_session"]:
        del outcome["output_without_session"]
    return outcome


def _session_output(outputs: list[tuple[int | None, AgentEvent]]) -> int:
    """Append each Output to its agent's newest open session, in order, in four queries whatever the
    batch size; returns how many found a session (the rest are only in the stream and on live pages).

    A message keeps the Output's stream sequence: an Output already held (a rebuild replaying it)
    counts as found and is not appended twice."""
    if not outputs:
        return 0
    sequences = [sequence for sequence, _ in outputs if sequence is not None]
    # Array parameters, not IN lists of thousands (psycopg parses a query text per placeholder).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT stream_sequence FROM {SessionMessage._meta.db_table} WHERE stream_sequence = ANY(%s::bigint[])",
            [sequences],
        )
        held = {row[0] for row in cursor.fetchall()}
    if held:
        outputs = [(sequence, event) for sequence, event in outputs if sequence not in held]
        if not outputs:
            return len(held)
    agent_ids = list({event.agent_id for _, event in outputs})
    with connection.cursor() as cursor:  # each agent's newest open session
        cursor.execute(
            f"""
            SELECT DISTINCT ON (agent_id) agent_id, id FROM {InteractiveSession._meta.db_table}
             WHERE agent_id = ANY(%s::uuid[]) AND state = ANY(%s::text[])
             ORDER BY agent_id, started_at DESC
            """,
            [agent_ids, [str(state) for state in OPEN_SESSION_STATES]],
        )
        session_of = dict(cursor.fetchall())
    if not session_of:
        return len(held)
    next_position = {
        session: (last + 1 if last is not None else 0)
        for session, last in SessionMessage.objects.filter(session_id__in=session_of.values())
        .values("session_id")
        .annotate(last=Max("position"))
        .values_list("session_id", "last")
    }
    messages = []
    for sequence, event in outputs:
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
                stream_sequence=sequence,
            )
        )
    SessionMessage.objects.bulk_create(messages)
    return len(messages) + len(held)


class _States:
    """The statuses of a batch's agents: read once (locked, in id order), moved in memory through
    the lifecycle event by event, written once. A few queries per batch instead of two per event;
    the decisions are the same as one event at a time."""

    def __init__(self, events: list[tuple[int | None, AgentEvent]]) -> None:
        ids = list({event.agent_id for _, event in events if event.kind in STATE_EVENTS})
        self.current: dict = {}
        if ids:  # a batch of heartbeats and output moves no state: no query
            # Locked in id order (no deadlock with another writer). One array parameter, not an IN list
            # of thousands: psycopg parses a query text per placeholder.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, status FROM {Agent._meta.db_table} WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
                    [ids],
                )
                self.current = dict(cursor.fetchall())
        self.moved: set = set()
        self.anomalies: list[AgentAnomaly] = []
        self.created: dict = {}  # agents first met in a Spawned of this batch, inserted together by save()

    def apply(self, sequence: int | None, event: AgentEvent) -> str:
        if event.kind == "Spawned":
            return self._spawned(sequence, event)
        target = _target_state(event)
        if target is None:
            return "ignored"
        current = self.current.get(event.agent_id)
        if current is None:
            return self._anomaly(sequence, event, "", target, "event for an agent the console does not know")
        if current == target:  # the runtime wrote the row itself already: nothing to move
            return "in_sync"
        if event.kind == "StateChanged" and event.old_state != current:
            detail = f"the event says it moved from {event.old_state}, the console has it in {current}"
            return self._anomaly(sequence, event, current, target, detail)
        try:
            check_transition(current, target)
        except IllegalTransition as error:
            return self._anomaly(sequence, event, current, target, str(error))
        self.current[event.agent_id] = target
        self.moved.add(event.agent_id)
        return "state_changed"

    def _spawned(self, sequence: int | None, event: AgentEvent) -> str:
        """A Spawned: the runtime publishes it only after ``Agent::spawn`` succeeded, so the agent
        is Running (never Created).

        - Unknown agent: created, Running, with the message's config ("spawned").
        - Created or Starting (a row the runtime or an operator wrote before the spawn ended): moved
          to Running and given the message's config ("state_changed").
        - Running already: nothing to move ("in_sync").
        - Idle, Processing, Paused, Stopping: the agent has moved on since its spawn; this Spawned is
          an older message read again (a rebuild over a row written meanwhile, a second console),
          not news. Moving it back to Running would undo what the runtime did, so nothing moves
          and nothing is wrong ("already_spawned": not "in_sync", which tells the live pages the
          agent is in the event's state, Running).
        - Terminated or Error: an anomaly, the state stays. The runtime never spawns an agent id
          twice (``Agent::new`` draws a new random AgentId for every Spawn command) and it
          publishes no Spawned after a failed spawn, so a Spawned for an agent that ended is not a
          re-spawn the console should follow: something else wrote that id (a foreign publisher,
          a stream mixed from two runtimes) and an operator should look.
        """
        current = self.current.get(event.agent_id)
        if current is None:
            self.created[event.agent_id] = _new_spawned(event)
            self.current[event.agent_id] = AgentState.RUNNING.value
            return "spawned"
        running = AgentState.RUNNING.value
        if current in (AgentState.CREATED, AgentState.STARTING):
            config = _spawn_fields(event)
            if config:
                Agent.objects.filter(pk=event.agent_id).update(**config)
            self.current[event.agent_id] = running
            self.moved.add(event.agent_id)
            return "state_changed"
        if current in (AgentState.TERMINATED, AgentState.ERROR):
            detail = (
                f"Spawned for an agent that is {current}: the runtime never spawns an agent id twice, "
                "so this message does not come from the runtime's spawn of this agent"
            )
            return self._anomaly(sequence, event, current, running, detail)
        return "in_sync" if current == running else "already_spawned"

    def _anomaly(self, sequence: int | None, event: AgentEvent, current: str, target: str, detail: str) -> str:
        self.anomalies.append(
            AgentAnomaly(
                agent_id=event.agent_id,
                event_kind=event.kind,
                current_state=current,
                attempted_state=target,
                detail=detail,
                stream_sequence=sequence,
            )
        )
        return "anomaly"

    def save(self, beats: dict) -> None:
        """The new agents in one INSERT, then every agent row the batch changed in one UPDATE, once
        (its final state, its newest heartbeat: ``beats``), the anomalies in one INSERT: a
        first-start catch-up meets thousands of Spawned in a batch, and PostgreSQL's cost is per
        row version written (each one a new entry in every index of the agents table).

        A new agent is inserted in its final state of the batch. Should another writer have made
        the row since the batch read its agents (an operator adding it in the admin), the insert
        leaves that row and the UPDATE below gives it the state the events led to."""
        if self.created:
            for agent_id, agent in self.created.items():
                agent.status = self.current[agent_id]
            Agent.objects.bulk_create(self.created.values(), ignore_conflicts=True)
            self.moved.update(self.created)
        _write_agents({agent: self.current[agent] for agent in self.moved}, beats)
        if self.anomalies:
            AgentAnomaly.objects.bulk_create(self.anomalies)


def forget_stream_sequences() -> int:
    """AGENT_EVENTS was deleted and made again: its sequences start over, so those held from the
    old stream (session output, anomalies) no longer name its messages. Without this a new Output
    whose sequence an old message holds would be taken as already appended."""
    forgotten = SessionMessage.objects.filter(stream_sequence__isnull=False).update(stream_sequence=None)
    return forgotten + AgentAnomaly.objects.filter(stream_sequence__isnull=False).update(stream_sequence=None)


def _write_agents(statuses: dict, beats: dict) -> None:
    """One UPDATE for a batch's agent rows, each written once: ``statuses`` (agent -> the state the
    batch moved it to: state_changed_at and updated_at become now) and ``beats`` (agent -> its
    newest heartbeat, which moves last_heartbeat forward only: a replayed or late heartbeat never
    moves it back). A row with only an older heartbeat is not written at all. Rows in id order."""
    agents = sorted(statuses.keys() | beats.keys(), key=attrgetter("int"))  # a UUID orders by its int
    if not agents:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Agent._meta.db_table} a
               SET status = COALESCE(m.status, a.status),
                   state_changed_at = CASE WHEN m.status IS NULL THEN a.state_changed_at ELSE now() END,
                   updated_at = CASE WHEN m.status IS NULL THEN a.updated_at ELSE now() END,
                   last_heartbeat = CASE WHEN a.last_heartbeat IS NULL OR a.last_heartbeat < m.beat
                                         THEN m.beat ELSE a.last_heartbeat END
              FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS m(id, status, beat)
             WHERE a.id = m.id
               AND (m.status IS NOT NULL OR a.last_heartbeat IS NULL OR a.last_heartbeat < m.beat)
            """,
            [agents, [statuses.get(agent) for agent in agents], [beats.get(agent) for agent in agents]],
        )
