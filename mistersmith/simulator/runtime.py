"""The simulated runtime: chatter, failures, restart and agent-command answers over one database and one NATS
connection.

Everything that writes or publishes runs under one lock, so an agent's events always describe its
transitions in the order they were committed. Events on ``agent.>`` and ``supervision.>`` are paced by
one token bucket; RestartCompleted answers, agent-command replies and the events of commanded moves are
not, because the console waits for them and their number is bounded by the commands it sends. Only the
waits (delays, pacing) run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from typing import Any

import nats
import psycopg
from django.conf import settings
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from agents.lifecycle import AgentState as S
from agents.lifecycle import IllegalTransition, check_transition
from mistersmith.embedded import postgres_url
from mistersmith.messages import InvalidMessage, decode_json
from mistersmith.nats import nats_url
from mistersmith.nats import servers as nats_servers
from mistersmith.simulator import commands, payloads, tables
from mistersmith.simulator.commands import AgentCommand
from mistersmith.simulator.options import SimulatorOptions, SimulatorStats
from mistersmith.simulator.payloads import Message, RestartCommand
from mistersmith.streams import ensure_streams
from supervision.events import CONTROL_SUBJECT, control_variant

logger = logging.getLogger(__name__)

LIVE = frozenset({S.CREATED, S.STARTING, S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.STOPPING})
# The everyday moves of a healthy agent: execute, finish, pause, resume, finish spawning or stopping.
MOVES: dict[str, dict[str, int]] = {
    S.CREATED: {S.STARTING: 1},
    S.STARTING: {S.RUNNING: 1},
    S.RUNNING: {S.PROCESSING: 6, S.PAUSED: 1},
    S.IDLE: {S.PROCESSING: 6, S.PAUSED: 1},
    S.PROCESSING: {S.IDLE: 1},
    S.PAUSED: {S.RUNNING: 1},
    S.STOPPING: {S.TERMINATED: 1},
}
CHATTER = {"heartbeat": 4, "health": 2, "state": 3, "output": 2}
# Outside the agent.> / supervision.> budget: a discovery now and then, and the pool's health report.
DISCOVERY_SECONDS = 2.0
HEALTH_REPORT_SECONDS = 5.0
# Agent commands: the states each move is taken from (the runtime's can_pause, can_stop ...).
PAUSABLE = frozenset({S.RUNNING, S.IDLE})
STOPPABLE = frozenset({S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.ERROR})
HEALTHY = frozenset({S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED})
INPUT_STATES = frozenset({S.RUNNING, S.IDLE, S.PROCESSING})
# A graceful stop holds the agent in Stopping this long before Terminated (its process finishing), so
# a consumer sees the two moves apart, as it would from the runtime.
GRACEFUL_STOP_SECONDS = 0.2


@cache
def sources(target: str) -> list[str]:
    """The states the lifecycle lets move to ``target``, asked of check_transition (the one authority)."""
    allowed = []
    for state in S.values:
        with contextlib.suppress(IllegalTransition):
            check_transition(state, target)
            allowed.append(state)
    return allowed


@dataclass
class SimAgent:
    node_id: uuid.UUID
    node_name: str
    parent_id: uuid.UUID | None
    agent_id: uuid.UUID
    state: str
    node_status: str

    @property
    def alive(self) -> bool:
        return self.state in LIVE and self.node_status != "failed"


@dataclass
class RestartOutcome:
    success: bool
    error_message: str | None = None
    instance_id: uuid.UUID | None = None
    agent: SimAgent | None = None
    config: dict[str, Any] | None = None


async def pause(halt: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; False when ``halt`` came first, so every wait ends promptly on stop."""
    try:
        await asyncio.wait_for(halt.wait(), max(seconds, 0))
    except TimeoutError:
        return True
    return False


class TokenBucket:
    """At most ``rate`` takes a second on average and ``burst`` at once; a wait ends when ``halt`` is set."""

    def __init__(self, rate: float, burst: float, halt: asyncio.Event) -> None:
        self.rate, self.burst, self.halt = rate, burst, halt
        self.tokens, self.updated = burst, time.monotonic()

    async def take(self) -> bool:
        while self.rate > 0 and not self.halt.is_set():
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            await pause(self.halt, (1 - self.tokens) / self.rate)
        return False


class Simulator:
    """One simulated runtime: a database connection, a NATS connection and the animated agents."""

    db: psycopg.AsyncConnection
    nc: Client
    js: JetStreamContext

    def __init__(self, options: SimulatorOptions, stats: SimulatorStats) -> None:
        self.options, self.stats = options, stats
        self.rng = random.Random(options.seed)
        self.halt = asyncio.Event()
        self.lock = asyncio.Lock()
        self.bucket = TokenBucket(options.rate, options.burst, self.halt)
        self.agents: dict[uuid.UUID, SimAgent] = {}
        self.beats: set[uuid.UUID] = set()
        self.handled: set[str] = set()  # restart ids answered (or being answered) by this process
        self.tasks: set[asyncio.Task] = set()
        self.command_subscription: Any = None

    async def open(self) -> None:
        database = self.options.database_url or postgres_url(settings.DATABASES["default"])
        self.db = await psycopg.AsyncConnection.connect(database, autocommit=True)
        url = self.options.nats_url or nats_url()
        self.nc = await nats.connect(nats_servers(url), name="mistersmith-simulator", max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js)
        if not await tables.has_nodes(self.db):
            self.stats.nodes_created = await tables.create_tree(self.db, self.options.nodes, self.rng)
        sample = await tables.load_sample(self.db, self.options.sample, self.rng)
        self.agents = {agent.agent_id: agent for agent in (SimAgent(*row) for row in sample)}
        self.stats.agents_animated = len(self.agents)

    async def close(self) -> None:
        """Close what :meth:`open` got to open, once the stream has acked the events in flight."""
        if getattr(self, "nc", None) is not None and not self.nc.is_closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.js.publish_async_completed(), 5)
            await self.nc.close()
        if getattr(self, "db", None) is not None:
            await self.db.close()

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], object] | None) -> None:
        """Run the workers until ``stop``, the duration, or a worker's crash; then stop them cleanly."""
        started = self.bucket.updated = time.monotonic()
        workers: list[Coroutine[Any, Any, None]] = [self._flush_heartbeats()]
        if self.options.events and self.options.rate > 0:
            workers.append(self._chatter())
            workers.append(self._broadcasts())
        if self.options.failure_rate > 0:
            workers.append(self._failures())
        if self.options.restarts:
            workers.append(self._consume(await self._subscribe()))
        if self.options.commands:  # core NATS request/reply, like the runtime's own handler
            self.command_subscription = await self.nc.subscribe(commands.COMMAND_SUBJECT, cb=self._on_command)
            await self.nc.flush()  # the server knows the subscription before anyone is told we are ready
        tasks = [asyncio.create_task(worker) for worker in workers]
        if on_ready is not None:
            on_ready()
        stopper = asyncio.create_task(stop.wait())
        try:
            duration = self.options.duration or None
            await asyncio.wait([stopper, *tasks], timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.halt.set()
            self.stats.elapsed_seconds = time.monotonic() - started
            if self.command_subscription is not None:
                with contextlib.suppress(NatsError):
                    await self.command_subscription.unsubscribe()
            stopper.cancel()
            _, late = await asyncio.wait([*tasks, *self.tasks], timeout=10)
            for task in late:
                task.cancel()
            await asyncio.gather(stopper, *late, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    # -- publishing ---------------------------------------------------------------------------------

    async def _publish(self, message: Message | None) -> None:
        """One budgeted event through JetStream; dropped once stopping (the bucket then gives no token).

        Publishes are pipelined: they leave in order on one connection and are counted when the stream
        acks them, so the publish rate is not capped by one round trip per event.
        """
        if message is None or not await self.bucket.take():
            return
        subject, body = message
        headers = {"Nats-Msg-Id": body.get("message_id") or str(uuid.uuid4())}
        try:
            ack = await self.js.publish_async(subject, json.dumps(body).encode(), headers=headers, wait_stall=5)
        except NatsError as error:
            self.stats.publish_errors += 1
            logger.warning("simulator could not publish on %s: %s", subject, error)
            return
        ack.add_done_callback(self._acked)

    def _acked(self, ack: asyncio.Future) -> None:
        if ack.cancelled() or ack.exception() is not None:
            self.stats.publish_errors += 1
            logger.warning("simulator event not stored: %s", "cancelled" if ack.cancelled() else ack.exception())
        else:
            self.stats.events_published += 1

    async def _agent_event(self, agent: SimAgent, variant: str, **fields: Any) -> None:
        await self._publish(payloads.agent_event(agent.agent_id, variant, fields, self.rng))

    async def _state_changed(
        self, agent: SimAgent, old: str, new: str, trigger: str, error: dict | None = None
    ) -> None:
        await self._agent_event(agent, "StateChanged", old_state=old, new_state=new)
        await self._publish(payloads.lifecycle(agent.agent_id, agent.parent_id, old, new, trigger, error))

    async def _move(self, executor: tables.Executor, agent: SimAgent, *targets: str) -> tuple[str, str] | None:
        """Move the agent row to the first target its current state allows: (old, new), or None.

        The row's own state decides, read under a row lock, so a change the console made meanwhile is
        respected instead of overwritten; one statement per try keeps chatter at one round trip.
        """
        for target in targets:
            row = await tables.fetch_one(executor, tables.MOVE_AGENT, [target, agent.agent_id, sources(target)])
            if row is not None:
                agent.state = target
                return row[0], target
        row = await tables.fetch_one(executor, "SELECT status FROM agents WHERE id = %s", [agent.agent_id])
        agent.state = row[0] if row else S.TERMINATED
        return None

    # -- chatter: heartbeats, health, state changes, output -----------------------------------------

    async def _chatter(self) -> None:
        """As fast as the budget allows (the bucket paces it), one random event of one live agent at a time."""
        while not self.halt.is_set():
            alive = [a for a in self.agents.values() if a.alive]
            if not alive:
                await pause(self.halt, 0.5)
                continue
            agent, kind = self.rng.choice(alive), self.rng.choices(list(CHATTER), list(CHATTER.values()))[0]
            async with self.lock:
                if agent.alive:
                    await getattr(self, f"_emit_{kind}")(agent)

    async def _emit_heartbeat(self, agent: SimAgent) -> None:
        self.beats.add(agent.agent_id)
        stamp = payloads.system_time() if self.rng.random() < 0.7 else payloads.rfc3339()
        await self._agent_event(agent, "Heartbeat", timestamp=stamp)

    async def _emit_output(self, agent: SimAgent) -> None:
        await self._agent_event(agent, "Output", content=self.rng.choice(payloads.OUTPUTS))

    async def _emit_health(self, agent: SimAgent) -> None:
        await self._publish(payloads.health(agent.agent_id, self.rng))

    async def _broadcasts(self) -> None:
        """A live agent's discovery every DISCOVERY_SECONDS, and the pool's use on system.health every
        HEALTH_REPORT_SECONDS (the discoveries page and the dashboard show them)."""
        since_report = HEALTH_REPORT_SECONDS
        while True:
            alive = [agent for agent in self.agents.values() if agent.alive]
            if alive:
                await self._broadcast(payloads.discovery(self.rng.choice(alive).agent_id, self.rng))
            if since_report >= HEALTH_REPORT_SECONDS:
                await self._broadcast(payloads.system_health(len(alive), len(self.agents)))
                since_report = 0.0
            if not await pause(self.halt, DISCOVERY_SECONDS):
                return
            since_report += DISCOVERY_SECONDS

    async def _broadcast(self, message: Message) -> None:
        subject, body = message
        try:
            await self.js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": str(uuid.uuid4())})
        except (NatsError, TimeoutError) as error:
            self.stats.publish_errors += 1
            logger.warning("simulator could not publish on %s: %s", subject, error)
            return
        self.stats.broadcasts_published += 1

    async def _emit_state(self, agent: SimAgent) -> None:
        moves = MOVES.get(agent.state)
        if not moves:
            return await self._emit_heartbeat(agent)
        target = self.rng.choices(list(moves), list(moves.values()))[0]
        moved = await self._move(self.db, agent, target)
        if moved:
            await self._state_changed(agent, *moved, trigger="simulated activity")

    async def _flush_heartbeats(self) -> None:
        """Heartbeats land in the database once a second, one statement per table, not one per event."""
        while await pause(self.halt, 1.0):
            if not self.beats:
                continue
            ids, self.beats = list(self.beats), set()
            async with self.lock, self.db.transaction():
                await self.db.execute("UPDATE agents SET last_heartbeat = NOW() WHERE id = ANY(%s)", [ids])
                await self.db.execute(
                    "UPDATE supervision_child_states c SET last_heartbeat = NOW() FROM supervision_nodes n"
                    " WHERE c.child_node_id = n.id AND n.agent_id = ANY(%s)",
                    [ids],
                )

    # -- failures -----------------------------------------------------------------------------------

    async def _failures(self) -> None:
        """Failures at random moments (a Poisson process at --failure-rate), on live agents only."""
        while await pause(self.halt, self.rng.expovariate(self.options.failure_rate)):
            alive = [a for a in self.agents.values() if a.alive]
            if alive:
                async with self.lock:
                    await self._inject_failure(self.rng.choice(alive))

    async def _inject_failure(self, agent: SimAgent) -> None:
        """A failure as the runtime records one: the row, the node failed, the child Failed, the agent down."""
        failure = payloads.random_failure(self.rng)
        context = {"agent_id": str(agent.agent_id), "host": "sim-host", "pid": self.rng.randint(1000, 60000)}
        async with self.db.transaction(), self.db.cursor() as cur:
            await tables.record_failure(cur, agent.node_id, failure, context)
            await cur.execute(tables.NODE_STATUS, ["failed", agent.node_id])
            if agent.parent_id:
                await tables.upsert_child(cur, agent.parent_id, (agent.node_name, agent.node_id), "Failed", errors=1)
            moved = await self._move(cur, agent, S.ERROR, S.TERMINATED)
            await cur.execute(
                "UPDATE agent_instances SET status = 'crashed'"
                " WHERE agent_id = %s AND status IN ('starting', 'running')",
                [agent.agent_id],
            )
        agent.node_status = "failed"
        self.stats.failures_injected += 1
        info = payloads.error_info(failure, agent.node_name, agent.agent_id)
        await self._agent_event(agent, "Error", error=f"{failure.reason}: {failure.detail}")
        if moved:
            await self._state_changed(agent, *moved, trigger="failure", error=info)
            if moved[1] == S.TERMINATED:
                await self._agent_event(agent, "Terminated", reason="forced_stop")
        await self._publish(payloads.coordination_error(failure, info))

    # -- restart commands ---------------------------------------------------------------------------

    async def _subscribe(self) -> Any:
        """The durable pull consumer on system.control, with the runtime's consumer settings."""
        config = ConsumerConfig(
            durable_name=self.options.consumer_name,
            filter_subject=CONTROL_SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=3,
            max_ack_pending=1000,
            deliver_policy=DeliverPolicy.NEW,  # a new consumer answers new commands, not a week of history
        )
        return await self.js.pull_subscribe(
            CONTROL_SUBJECT, durable=self.options.consumer_name, stream="SYSTEM_EVENTS", config=config
        )

    async def _consume(self, subscription: Any) -> None:
        while not self.halt.is_set():
            try:
                batch = await subscription.fetch(100, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except NatsError as error:  # NATS away for a moment: the client reconnects by itself
                logger.warning("simulator could not fetch commands: %s", error)
                await pause(self.halt, 1.0)
                continue
            for message in batch:
                await self._on_control(message)

    async def _on_control(self, message: Any) -> None:
        """Start answering a RestartNode once per restart id; ack everything else (our own answers too)."""
        try:
            name, body = control_variant(decode_json(message.data))
            command = payloads.parse_restart_node(body) if name == "RestartNode" else None
        except InvalidMessage:
            command = None
        if command is not None and command.restart_id not in self.handled:
            self.handled.add(command.restart_id)
            task = asyncio.create_task(self._restart(message, command))
            self.tasks.add(task)
            task.add_done_callback(self._forget)
            return
        if command is None:
            self.stats.ignored_messages += 1
        else:
            self.stats.duplicate_commands += 1
        await message.ack()

    def _forget(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("simulator restart failed", exc_info=task.exception())

    async def _restart(self, message: Any, command: RestartCommand) -> None:
        """Wait the delay (holding nothing), restart, answer, ack; then announce the new incarnation."""
        if not await pause(self.halt, command.delay_ms / 1000):
            self.handled.discard(command.restart_id)
            await message.nak()  # stopping: the next simulator answers it
            return
        async with self.lock:
            success = self.rng.random() >= self.options.restart_failure_ratio
            try:
                outcome = await self._apply_restart(command, success)
            except psycopg.Error as error:
                outcome = RestartOutcome(False, f"restart failed: {error}"[:1000])
            if outcome is None:
                self.stats.ignored_messages += 1
                await message.ack()
                return
            answer = payloads.restart_completed(command, outcome.success, outcome.error_message, outcome.instance_id)
            headers = {"Nats-Msg-Id": f"completed-{command.restart_id}"}
            try:
                await self.js.publish(CONTROL_SUBJECT, json.dumps(answer).encode(), headers=headers, timeout=5)
            except (NatsError, TimeoutError) as error:  # not answered: the redelivery gets another try
                logger.warning("simulator could not answer restart %s: %s", command.restart_id, error)
                self.handled.discard(command.restart_id)
                return
            await message.ack()
            if outcome.success:
                self.stats.restarts_ok += 1
            else:
                self.stats.restarts_failed += 1
            await self._announce_restart(outcome)

    async def _apply_restart(self, command: RestartCommand, success: bool) -> RestartOutcome | None:
        """The node back to active with a new instance, or failed again; the restart row is the console's.

        None for a node this database does not hold: another runtime (or another console's simulator on a
        shared NATS) owns it, so it is left for that one to answer.
        """
        async with self.db.transaction(), self.db.cursor() as cur:
            query = "SELECT node_id, parent_node_id, agent_id FROM supervision_nodes WHERE id = %s FOR UPDATE"
            row = await tables.fetch_one(cur, query, [command.node_id])
            if row is None:
                return None
            name, parent_id, agent_id = row
            error_message = None if success else self.rng.choice(payloads.RESTART_ERRORS)
            outcome = RestartOutcome(success, error_message)
            await cur.execute(tables.NODE_STATUS, ["active" if success else "failed", command.node_id])
            if agent_id is not None:
                agent = self.agents.get(agent_id) or SimAgent(command.node_id, name, parent_id, agent_id, "", "")
                if success:
                    outcome.instance_id = await tables.new_instance(cur, agent_id, self.rng.randint(20000, 29999))
                # A restart is a new incarnation, so no transition check: Created -> Starting -> Running or Error.
                agent.state, agent.node_status = (S.RUNNING, "active") if success else (S.ERROR, "failed")
                outcome.agent, outcome.config = agent, await tables.set_agent_status(cur, agent_id, agent.state)
            if parent_id is not None:
                state = "Running" if success else "Failed"
                await tables.upsert_child(
                    cur,
                    parent_id,
                    (name, command.node_id),
                    state,
                    instance_id=outcome.instance_id,
                    errors=int(not success),
                    restarts=1,
                )
        return outcome

    async def _announce_restart(self, outcome: RestartOutcome) -> None:
        agent = outcome.agent
        if agent is None:
            return
        await self._agent_event(agent, "Spawned", config=outcome.config)
        await self._state_changed(agent, S.CREATED, S.STARTING, trigger="restart")
        await self._state_changed(agent, S.STARTING, agent.state, trigger="restart")
        if not outcome.success:
            await self._agent_event(agent, "Error", error=outcome.error_message)

    # -- agent commands (core NATS request/reply on agent.command) -----------------------------------

    async def _on_command(self, message: Any) -> None:
        """Answer one command as the runtime's handler does: carry it out, then reply with a CommandResponse
        correlated with the command. An agent this database does not hold is another runtime's: no answer."""
        if self.halt.is_set() or not message.reply:
            return
        try:
            command = commands.parse_command(decode_json(message.data))
        except InvalidMessage as error:
            await self._respond(message, commands.error(None, f"Message parse error: {error}", 400))
            return
        try:
            async with self.lock:
                answer = await self._carry_out(command)
        except psycopg.Error as error:
            answer = commands.error(command.message_id, f"{command.variant} failed: {error}"[:1000], 500)
        if answer is None:
            self.stats.ignored_messages += 1
            return
        await self._respond(message, answer)

    async def _respond(self, message: Any, answer: dict[str, Any]) -> None:
        try:
            await message.respond(json.dumps(answer).encode())
        except NatsError as error:  # the console gave up waiting, or NATS went away: it sees a timeout
            logger.warning("simulator could not answer an agent command: %s", error)
            return
        if "Success" in answer["payload"]:
            self.stats.commands_ok += 1
        else:
            self.stats.commands_refused += 1

    async def _carry_out(self, command: AgentCommand) -> dict[str, Any] | None:
        if command.variant == "Spawn":
            return commands.error(command.message_id, "Spawn failed: the stand-in runtime does not spawn agents", 501)
        row = await tables.fetch_one(self.db, tables.AGENT_FACTS, [command.agent_id])
        if row is None:
            return None
        state, node_id, node_name, parent_id, node_status, uptime, heartbeat_age, *config = row
        agent = self.agents.get(command.agent_id) or SimAgent(
            node_id, node_name or "", parent_id, command.agent_id, state, node_status or "active"
        )
        agent.state = state  # the row decides, whatever this process last saw
        if command.variant == "Pause":
            return await self._command_move(command, agent, S.PAUSED, PAUSABLE, "paused")
        if command.variant == "Resume":
            return await self._command_move(command, agent, S.RUNNING, frozenset({S.PAUSED}), "running")
        if command.variant == "Stop":
            return await self._command_stop(command, agent)
        if command.variant == "Status":
            info = {
                "id": str(agent.agent_id),
                "state": state,
                "uptime": commands.duration(uptime or 0.0),
                "config": dict(zip(tables.CONFIG_KEYS, config, strict=True)),
            }
            return commands.success(command.message_id, info)
        if command.variant == "HealthCheck":
            return commands.success(command.message_id, self._health(agent, heartbeat_age))
        if state not in INPUT_STATES:  # Input
            return commands.error(command.message_id, f"Input failed: agent is {state}, not ready for input", 409)
        return commands.success(command.message_id, {"agent_id": str(agent.agent_id), "status": "input_sent"})

    def _health(self, agent: SimAgent, heartbeat_age: float | None) -> dict[str, Any]:
        healthy = agent.state in HEALTHY and agent.node_status != "failed"
        details = "process alive, answering" if healthy else f"agent is {agent.state}"
        return {
            "agent_id": str(agent.agent_id),
            "healthy": healthy,
            "details": details,
            "metrics": {
                "state": agent.state,
                "cpu_percent": round(self.rng.uniform(1, 60), 1) if healthy else 0.0,
                "memory_mb": self.rng.randint(80, 500) if healthy else 0,
                "heartbeat_age_seconds": round(heartbeat_age, 1) if heartbeat_age is not None else None,
            },
        }

    async def _reread(self, agent: SimAgent) -> None:
        row = await tables.fetch_one(self.db, "SELECT status FROM agents WHERE id = %s", [agent.agent_id])
        agent.state = row[0] if row else S.TERMINATED

    @staticmethod
    def _refuse(command: AgentCommand, agent: SimAgent, verb: str) -> dict[str, Any]:
        return commands.error(
            command.message_id, f"{verb.capitalize()} failed: cannot {verb} an agent in state {agent.state}", 409
        )

    async def _command_move(
        self, command: AgentCommand, agent: SimAgent, target: str, allowed: frozenset[str], label: str
    ) -> dict[str, Any]:
        """Pause or resume: one move from an allowed state, announced like any other, then the answer."""
        verb = command.variant.lower()
        if agent.state not in allowed:
            return self._refuse(command, agent, verb)
        moved = await tables.fetch_one(self.db, tables.MOVE_AGENT, [target, agent.agent_id, list(allowed)])
        if moved is None:  # changed under us (the console, another runtime): read it again to say why
            await self._reread(agent)
            return self._refuse(command, agent, verb)
        agent.state = target
        await self._announce(agent, moved[0], target)
        return commands.success(command.message_id, {"agent_id": str(agent.agent_id), "state": label})

    async def _command_stop(self, command: AgentCommand, agent: SimAgent) -> dict[str, Any]:
        """A graceful stop goes Stopping, then Terminated (graceful_stop); a forced one (kill) straight to
        Terminated (forced_stop). The instances stop and the node is terminated with it."""
        allowed = STOPPABLE if command.graceful else frozenset(sources(S.TERMINATED))
        if agent.state not in allowed:
            return self._refuse(command, agent, "stop")
        old = agent.state
        if command.graceful:
            moved = await tables.fetch_one(self.db, tables.MOVE_AGENT, [S.STOPPING, agent.agent_id, list(allowed)])
            if moved is None:
                return self._refuse(command, agent, "stop")
            agent.state = S.STOPPING
            await self._announce(agent, moved[0], S.STOPPING)
            await pause(self.halt, min(GRACEFUL_STOP_SECONDS, command.timeout_secs or GRACEFUL_STOP_SECONDS))
            allowed, old = frozenset({S.STOPPING}), S.STOPPING
        async with self.db.transaction(), self.db.cursor() as cur:
            moved = await tables.fetch_one(cur, tables.MOVE_AGENT, [S.TERMINATED, agent.agent_id, list(allowed)])
            if moved is not None:
                await cur.execute(tables.STOP_INSTANCES, [agent.agent_id])
                if agent.node_id is not None:
                    await cur.execute(tables.TERMINATE_NODE, [agent.node_id])
                    if agent.parent_id is not None:
                        await tables.upsert_child(cur, agent.parent_id, (agent.node_name, agent.node_id), "Stopped")
        if moved is None:
            await self._reread(agent)
            return self._refuse(command, agent, "stop")
        agent.state, agent.node_status = S.TERMINATED, "terminated"
        await self._announce(agent, old, S.TERMINATED)
        reason = "graceful_stop" if command.graceful else "forced_stop"
        await self._publish_now(payloads.agent_event(agent.agent_id, "Terminated", {"reason": reason}, self.rng))
        return commands.success(command.message_id, {"agent_id": str(agent.agent_id), "state": "stopped"})

    async def _announce(self, agent: SimAgent, old: str, new: str) -> None:
        """A commanded move's StateChanged and lifecycle events, published before the answer leaves."""
        fields = {"old_state": old, "new_state": new}
        await self._publish_now(payloads.agent_event(agent.agent_id, "StateChanged", fields, self.rng))
        await self._publish_now(payloads.lifecycle(agent.agent_id, agent.parent_id, old, new, "command", None))

    async def _publish_now(self, message: Message | None) -> None:
        """One event outside the budget, waited for: the answer to a command follows its events."""
        if message is None:
            return
        subject, body = message
        headers = {"Nats-Msg-Id": body.get("message_id") or str(uuid.uuid4())}
        try:
            await self.js.publish(subject, json.dumps(body).encode(), headers=headers, timeout=5)
        except (NatsError, TimeoutError) as error:
            self.stats.publish_errors += 1
            logger.warning("simulator could not publish on %s: %s", subject, error)
            return
        self.stats.command_events_published += 1
