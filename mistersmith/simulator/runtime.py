"""The simulated runtime: agent-command and system answers, failures healed by their supervisors, restart
answers and instance heartbeats, over one database and one NATS connection.

By default it sends only what the real runtime sends (MisterSmith ``src/message/handler.rs``): replies to
``agent.command`` requests, ``Spawned`` after a successful spawn and ``Terminated`` after a stop or kill
(each in ``MessageEnvelope::new``, plain NATS publishes without headers), answers to ``PoolStatus`` and
``SystemHealth`` on their ``reply_to``, and discoveries as the collaboration module's
``DiscoveryBroadcaster`` shares them (bare ``Discovery`` JSON on ``discoveries.questions|insights|
connections``: the runtime does publish these while its agents work, so they belong to the default set).
Nothing on ``system.health``, no StateChanged, Output, Error or Heartbeat. ``rich_events`` adds those,
the supervision.* lifecycle, health, error and task-allocation events, system.health reports and the
per-agent discovery subjects, with long texts now and then.

Agents' states live here, in memory, as in the runtime's pool: the stand-in never writes
``agents.status`` (see ``tables``). It writes what the runtime's supervision writes: failures, restarts
(its supervisors restart failed nodes by their policy, with ``should_restart`` and
``calculate_restart_delay``, and escalate when the policy says no), child states, node status, instances
and their heartbeats (batched, every ``heartbeat_interval``). RestartNode (console-owned) is answered
with RestartCompleted.

Everything that writes or publishes runs under one lock, so events describe moves in the order they
were made. The rich chatter is paced by one token bucket; answers are not (the console waits for them).
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
from dataclasses import dataclass, field
from typing import Any

import nats
import psycopg
from django.conf import settings
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from agents.lifecycle import AgentState as S
from mistersmith.embedded import postgres_url
from mistersmith.jetstream.client import nats_url
from mistersmith.jetstream.client import servers as nats_servers
from mistersmith.jetstream.messages import InvalidMessage, decode_json
from mistersmith.jetstream.streams import ensure_streams
from mistersmith.simulator import commands, payloads, tables, texts
from mistersmith.simulator.commands import AgentCommand
from mistersmith.simulator.options import SimulatorOptions, SimulatorStats
from mistersmith.simulator.payloads import Message, RestartCommand
from supervision.events import CONTROL_SUBJECT, control_variant

logger = logging.getLogger(__name__)

# The runtime's state checks (agent/state.rs, agent/lifecycle.rs) and the words of their errors.
PAUSABLE = frozenset({S.RUNNING, S.IDLE})  # can_pause
STOPPABLE = frozenset({S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.ERROR})  # can_stop
ACTIVE = frozenset({S.RUNNING, S.IDLE, S.PROCESSING})  # is_active
PROCESS_ALIVE = frozenset({S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED})  # the CLI process is up
EXPECTED = {"Pause": "Running or Idle", "Resume": "Paused", "Stop": "Running, Idle, Paused, or Error"}
POOL_CAPACITY = 100  # the pool's max_size when it holds fewer agents
# The rich chatter: everyday moves of a healthy agent, and how often each kind of event comes.
MOVES: dict[str, dict[str, int]] = {
    S.RUNNING: {S.PROCESSING: 6, S.PAUSED: 1},
    S.IDLE: {S.PROCESSING: 6, S.PAUSED: 1},
    S.PROCESSING: {S.IDLE: 1},
    S.PAUSED: {S.RUNNING: 1},
}
CHATTER = {"heartbeat": 4, "health": 2, "state": 3, "output": 2, "task": 1}
DISCOVERY_SECONDS = 2.0
HEALTH_REPORT_SECONDS = 5.0
GRACEFUL_STOP_SECONDS = 0.2  # rich events: Stopping is held this long, so the two moves are seen apart
RESTART_STOPPED = "the runtime stopped before the restart"


@dataclass
class SimAgent:
    """One agent of the runtime's pool: its state is the runtime's, held here and nowhere else."""

    node_id: uuid.UUID | None
    node_name: str
    parent_id: uuid.UUID | None
    agent_id: uuid.UUID
    state: str
    node_status: str
    config: dict[str, Any] | None = None
    registered: bool = True  # in the pool; False once stopped (unregistered: "Agent not found")
    since: float = field(default_factory=time.monotonic)  # Agent::created_at, for the uptime

    @property
    def alive(self) -> bool:
        return self.registered and self.state in PROCESS_ALIVE and self.node_status != "failed"


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
    """One simulated runtime: a database connection, a NATS connection and the agents of its pool."""

    db: psycopg.AsyncConnection
    nc: Client
    js: JetStreamContext

    def __init__(self, options: SimulatorOptions, stats: SimulatorStats) -> None:
        self.options, self.stats = options, stats
        self.rich = options.rich_events
        self.rng = random.Random(options.seed)
        self.halt = asyncio.Event()
        self.lock = asyncio.Lock()
        self.bucket = TokenBucket(options.rate, options.burst, self.halt)
        self.agents: dict[uuid.UUID, SimAgent] = {}
        self.registered_total = 0  # permits taken from the pool's semaphore, never given back (pool.rs)
        self.handled: set[str] = set()  # restart ids answered (or being answered) by this process
        self.tasks: set[asyncio.Task] = set()
        self.subscriptions: list[Any] = []
        self.last_discovery: str | None = None

    async def open(self) -> None:
        database = self.options.database_url or postgres_url(settings.DATABASES["default"])
        self.db = await psycopg.AsyncConnection.connect(database, autocommit=True)
        url = self.options.nats_url or nats_url()
        self.nc = await nats.connect(nats_servers(url), name="mistersmith-simulator", max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js)
        if not await tables.has_nodes(self.db):
            self.stats.nodes_created = await tables.create_tree(self.db, self.options.nodes, self.rng)
        for row in await tables.load_sample(self.db, self.options.sample, self.rng):
            self._register(SimAgent(*row[:6], config=dict(zip(tables.CONFIG_KEYS, row[6:], strict=True))))
        self.stats.agents_animated = len(self.agents)

    def _register(self, agent: SimAgent) -> SimAgent:
        """The agent into the pool (a Terminated one is known but not registered: the runtime dropped it)."""
        agent.registered = agent.state != S.TERMINATED
        self.agents[agent.agent_id] = agent
        self.registered_total += agent.registered
        return agent

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
        workers: list[Coroutine[Any, Any, None]] = [self._heartbeats()]
        if self.options.events:
            workers.append(self._broadcasts())
            if self.rich and self.options.rate > 0:
                workers.append(self._chatter())
        if self.options.failure_rate > 0:
            workers.append(self._failures())
        if self.options.restarts:
            workers.append(self._consume(await self._subscribe()))
        if self.options.commands:  # core NATS, like the runtime's own handlers
            self.subscriptions.append(await self.nc.subscribe(commands.COMMAND_SUBJECT, cb=self._on_command))
            self.subscriptions.append(await self.nc.subscribe(CONTROL_SUBJECT, cb=self._on_system))
            await self.nc.flush()  # the server knows the subscriptions before anyone is told we are ready
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
            for subscription in self.subscriptions:
                with contextlib.suppress(NatsError):
                    await subscription.unsubscribe()
            stopper.cancel()
            deadline = time.monotonic() + 10
            late = {*tasks, *self.tasks}
            while late and time.monotonic() < deadline:  # tasks may start tasks (a failure's supervisor)
                _, late = await asyncio.wait(late, timeout=deadline - time.monotonic())
                late |= {task for task in self.tasks if not task.done()}
            for task in late:
                task.cancel()
            await asyncio.gather(stopper, *late, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("simulator task failed", exc_info=task.exception())

    # -- publishing ---------------------------------------------------------------------------------

    async def _plain_publish(self, message: Message) -> bool:
        """One message as the runtime publishes: a plain NATS publish, no headers (the streams store it).

        Outside the --rich-events budget. False (counted in publish_errors) when NATS refused it."""
        subject, body = message
        try:
            await self.nc.publish(subject, json.dumps(body).encode())
        except NatsError as error:
            self.stats.publish_errors += 1
            logger.warning("simulator could not publish on %s: %s", subject, error)
            return False
        return True

    async def _send(self, message: Message | None) -> None:
        """An event of a commanded move (an answer, so unbudgeted)."""
        if message is not None and await self._plain_publish(message):
            self.stats.command_events_published += 1

    async def _publish(self, message: Message | None) -> None:
        """One budgeted --rich-events message through JetStream; dropped once stopping.

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

    async def _announce(
        self, agent: SimAgent, old: str, new: str, trigger: str, error: dict | None = None, *, budgeted: bool = False
    ) -> None:
        """--rich-events only: a move's StateChanged and lifecycle events. A commanded or restarted move's are
        answers, sent at once before the reply; a failure's are chatter, paced by the budget (``budgeted``)."""
        if not self.rich or old == new:
            return
        send = self._publish if budgeted else self._send
        await send(payloads.agent_event(agent.agent_id, "StateChanged", {"old_state": old, "new_state": new}, self.rng))
        await send(payloads.lifecycle(agent.agent_id, agent.parent_id, old, new, trigger, error))

    # -- heartbeats ---------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """The running instances of live agents (and their Running child states) beat every interval:
        one bounded statement per table per 1,000 agents, however many beats happened in between."""
        while await pause(self.halt, self.options.heartbeat_interval):
            async with self.lock:
                alive = [agent.agent_id for agent in self.agents.values() if agent.alive]
                if alive:
                    await tables.beat(self.db, alive)
                    self.stats.heartbeat_batches += 1

    # -- rich chatter: heartbeats, health, state changes, output, task allocation -------------------

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
        stamp = payloads.system_time() if self.rng.random() < 0.7 else payloads.rfc3339()
        await self._agent_event(agent, "Heartbeat", timestamp=stamp)

    async def _emit_output(self, agent: SimAgent) -> None:
        await self._agent_event(agent, "Output", content=texts.output(self.rng, long_ok=True))

    async def _emit_health(self, agent: SimAgent) -> None:
        await self._publish(payloads.health(agent.agent_id, self.rng))

    async def _emit_task(self, agent: SimAgent) -> None:
        alive = [a.agent_id for a in self.agents.values() if a.alive]
        await self._publish(payloads.task_allocation(alive or [agent.agent_id], self.rng))

    async def _emit_state(self, agent: SimAgent) -> None:
        moves = MOVES.get(agent.state)
        if not moves:
            return await self._emit_heartbeat(agent)
        target = self.rng.choices(list(moves), list(moves.values()))[0]
        old, agent.state = agent.state, target
        await self._agent_event(agent, "StateChanged", old_state=old, new_state=target)
        await self._publish(payloads.lifecycle(agent.agent_id, agent.parent_id, old, target, "activity", None))

    async def _broadcasts(self) -> None:
        """A live agent's discovery every DISCOVERY_SECONDS (now and then built on the previous one); with
        --rich-events the pool's use on system.health every HEALTH_REPORT_SECONDS too."""
        since_report = HEALTH_REPORT_SECONDS
        while True:
            alive = [agent for agent in self.agents.values() if agent.alive]
            if alive:
                earlier = self.last_discovery if self.rng.random() < 0.2 else None
                subject, body = payloads.discovery(
                    self.rng.choice(alive).agent_id, self.rng, rich=self.rich, earlier=earlier
                )
                self.last_discovery = body["content"]
                await self._broadcast((subject, body))
            if self.rich and since_report >= HEALTH_REPORT_SECONDS:
                active, capacity, available = self._pool_counts()
                await self._broadcast(("system.health", payloads.health_data(active, capacity, available)))
                since_report = 0.0
            if not await pause(self.halt, DISCOVERY_SECONDS):
                return
            since_report += DISCOVERY_SECONDS

    async def _broadcast(self, message: Message) -> None:
        """A discovery or a system.health report (unbudgeted)."""
        if await self._plain_publish(message):
            self.stats.broadcasts_published += 1

    # -- failures and their supervisors ---------------------------------------------------------------

    async def _failures(self) -> None:
        """Failures at random moments (a Poisson process at --failure-rate), on live agents with a node."""
        while await pause(self.halt, self.rng.expovariate(self.options.failure_rate)):
            alive = [a for a in self.agents.values() if a.alive and a.node_id is not None]
            if alive:
                async with self.lock:
                    await self._inject_failure(self.rng.choice(alive))

    async def _inject_failure(self, agent: SimAgent, failure: payloads.Failure | None = None) -> None:
        """A failure as the runtime records one (the row, the node failed, the child Failed, the instances
        crashed, the agent in Error), then its supervisor decides, in the background."""
        failure = failure or payloads.random_failure(self.rng)
        context = {"agent_id": str(agent.agent_id), "host": "sim-host", "pid": self.rng.randint(1000, 60000)}
        async with self.db.transaction(), self.db.cursor() as cur:
            failure_id = await tables.record_failure(cur, agent.node_id, failure, context)
            await cur.execute(tables.NODE_STATUS, ["failed", agent.node_id])
            if agent.parent_id:
                await tables.upsert_child(cur, agent.parent_id, (agent.node_name, agent.node_id), "Failed", errors=1)
            await cur.execute(
                "UPDATE agent_instances SET status = 'crashed'"
                " WHERE agent_id = %s AND status IN ('starting', 'running')",
                [agent.agent_id],
            )
        old, agent.state, agent.node_status = agent.state, S.ERROR, "failed"
        self.stats.failures_injected += 1
        if self.rich:
            info = payloads.error_info(failure, agent.node_name, agent.agent_id)
            await self._agent_event(agent, "Error", error=f"{failure.reason}: {failure.detail}")
            await self._announce(agent, old, S.ERROR, "failure", info, budgeted=True)
            await self._publish(payloads.coordination_error(failure, info))
        self._background(self._supervise(agent, failure_id))

    async def _supervise(self, agent: SimAgent, failure_id: uuid.UUID) -> None:
        """The parent supervisor's answer to a failure: should_restart says yes, so a restart after
        calculate_restart_delay (the restart row written and completed, as the runtime does), or no, so the
        failure is escalated to the parent and the node stays failed. A failed restart is a new failure."""
        async with self.lock, self.db.transaction(), self.db.cursor() as cur:
            allowed, attempt, delay = await tables.restart_decision(cur, agent.node_id)
            if not allowed:
                parent = None
                if agent.parent_id is not None:
                    row = await tables.fetch_one(
                        cur, "SELECT node_id FROM supervision_nodes WHERE id = %s", [agent.parent_id]
                    )
                    parent = row[0] if row else None
                await tables.escalate(cur, failure_id, parent)
                self.stats.escalations += 1
                return
            restart_id = await tables.begin_restart(cur, agent.node_id, failure_id, attempt, delay)
        waited = await pause(self.halt, delay / 1000)
        async with self.lock:
            if not waited:
                async with self.db.transaction(), self.db.cursor() as cur:
                    await tables.complete_restart(cur, restart_id, False, RESTART_STOPPED, None)
                return
            success = self.rng.random() >= self.options.restart_failure_ratio
            outcome = await self._apply_restart(agent.node_id, success)
            if outcome is None:  # the node was deleted meanwhile
                return
            async with self.db.transaction(), self.db.cursor() as cur:
                await tables.complete_restart(cur, restart_id, success, outcome.error_message, outcome.instance_id)
            if success:
                self.stats.supervisor_restarts_ok += 1
            else:
                self.stats.supervisor_restarts_failed += 1
            await self._announce_restart(outcome)
            if not success and outcome.agent is not None:
                failure = payloads.Failure("Crash", f"restart failed: {outcome.error_message}", "high", None)
                await self._inject_failure(outcome.agent, failure)

    # -- restart commands (console-owned protocol on system.control) --------------------------------

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
            self._background(self._restart(message, command))
            return
        if command is None:
            self.stats.ignored_messages += 1
        else:
            self.stats.duplicate_commands += 1
        await message.ack()

    async def _restart(self, message: Any, command: RestartCommand) -> None:
        """Wait the delay (holding nothing), restart, answer, ack; then announce the new incarnation."""
        if not await pause(self.halt, command.delay_ms / 1000):
            self.handled.discard(command.restart_id)
            await message.nak()  # stopping: the next simulator answers it
            return
        async with self.lock:
            success = self.rng.random() >= self.options.restart_failure_ratio
            try:
                outcome = await self._apply_restart(command.node_id, success)
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

    async def _apply_restart(self, node_id: uuid.UUID, success: bool) -> RestartOutcome | None:
        """The node back to active with a new instance, or failed again; the agent (if any) Running again in
        the pool, or in Error. None for a node this database does not hold: another runtime (or another
        console's simulator on a shared NATS) owns it, so it is left for that one to answer."""
        async with self.db.transaction(), self.db.cursor() as cur:
            query = "SELECT node_id, parent_node_id, agent_id FROM supervision_nodes WHERE id = %s FOR UPDATE"
            row = await tables.fetch_one(cur, query, [node_id])
            if row is None:
                return None
            name, parent_id, agent_id = row
            error_message = None if success else self.rng.choice(payloads.RESTART_ERRORS)
            outcome = RestartOutcome(success, error_message)
            await cur.execute(tables.NODE_STATUS, ["active" if success else "failed", node_id])
            if agent_id is not None:
                agent = self.agents.get(agent_id) or self._register(
                    SimAgent(node_id, name, parent_id, agent_id, S.ERROR, "failed")
                )
                if success:
                    outcome.instance_id = await tables.new_instance(cur, agent_id, self.rng.randint(20000, 29999))
                if not agent.registered:  # a stopped agent restarted: back in the pool
                    agent.registered, agent.since = True, time.monotonic()
                    self.registered_total += 1
                # A restart is a new incarnation, so no transition check: Created -> Starting -> Running or Error.
                agent.state, agent.node_status = (S.RUNNING, "active") if success else (S.ERROR, "failed")
                outcome.agent, outcome.config = agent, await tables.agent_config(cur, agent_id)
                agent.config = agent.config or outcome.config
            if parent_id is not None:
                state = "Running" if success else "Failed"
                await tables.upsert_child(
                    cur,
                    parent_id,
                    (name, node_id),
                    state,
                    instance_id=outcome.instance_id,
                    errors=int(not success),
                    restarts=1,
                )
        return outcome

    async def _announce_restart(self, outcome: RestartOutcome) -> None:
        """A restarted agent is a spawned one: Spawned (it is Running) as the handler sends after a spawn.
        --rich-events adds the moves (Created -> Starting -> Running or Error) and the restart's Error."""
        agent = outcome.agent
        if agent is None:
            return
        if outcome.success:
            await self._send(payloads.runtime_agent_event(agent.agent_id, "Spawned", {"config": outcome.config}))
        if self.rich:
            await self._announce(agent, S.CREATED, S.STARTING, "restart")
            await self._announce(agent, S.STARTING, agent.state, "restart")
            if not outcome.success:
                await self._agent_event(agent, "Error", error=outcome.error_message)

    # -- agent commands (core NATS request/reply on agent.command), as handler.rs answers them --------

    async def _on_command(self, message: Any) -> None:
        """Carry out one command and reply to the request's reply subject with a CommandResponse correlated
        with the command. Like the runtime, a command it cannot read gets no reply (the handler returns its
        parse error before replying); an agent this database does not hold is another runtime's: no reply."""
        if self.halt.is_set() or not message.reply:
            return
        try:
            command = commands.parse_command(decode_json(message.data))
        except InvalidMessage as error:
            self.stats.commands_unreadable += 1
            logger.warning("simulator could not read an agent command: %s", error)
            return
        try:
            async with self.lock:
                answer = await self._carry_out(command)
        except psycopg.Error as error:
            answer = commands.error(command.message_id, f"Pool error: {error}"[:1000])
        if answer is None:
            self.stats.ignored_messages += 1
            return
        try:
            await message.respond(json.dumps(answer).encode())
        except NatsError as error:  # the console gave up waiting, or NATS went away: it sees a timeout
            logger.warning("simulator could not answer an agent command: %s", error)
            return
        if "Success" in answer["payload"]:
            self.stats.commands_ok += 1
        else:
            self.stats.commands_refused += 1

    async def _pool_agent(self, agent_id: uuid.UUID) -> SimAgent | None:
        """The agent as this runtime holds it; one this process has not seen yet is read once from the
        catalogue (the state it had when this runtime took it over). None: not this database's agent."""
        if agent_id in self.agents:
            return self.agents[agent_id]
        row = await tables.fetch_one(self.db, tables.AGENT_FACTS, [agent_id])
        if row is None:
            return None
        state, node_id, node_name, parent_id, node_status, uptime, _, *config = row
        agent = SimAgent(node_id, node_name or "", parent_id, agent_id, state, node_status or "active")
        agent.config = dict(zip(tables.CONFIG_KEYS, config, strict=True))
        agent.since = time.monotonic() - (uptime or 0.0)
        return self._register(agent)

    async def _carry_out(self, command: AgentCommand) -> dict[str, Any] | None:
        if command.variant == "Spawn":
            return await self._spawn(command)
        agent = await self._pool_agent(command.agent_id)
        if agent is None:
            return None
        if not agent.registered:
            return commands.agent_not_found(command.message_id, command.agent_id)
        agent_id, state = str(agent.agent_id), agent.state
        if command.variant == "Pause":
            if state not in PAUSABLE:
                return self._invalid(command, state)
            agent.state = S.PAUSED
            await self._announce(agent, state, S.PAUSED, "command")
            return commands.success(command.message_id, {"agent_id": agent_id, "state": "paused"})
        if command.variant == "Resume":
            if state != S.PAUSED:
                return self._invalid(command, state)
            agent.state = S.RUNNING
            await self._announce(agent, state, S.RUNNING, "command")
            return commands.success(command.message_id, {"agent_id": agent_id, "state": "running"})
        if command.variant == "Stop":
            return await self._stop(command, agent)
        if command.variant == "Status":
            return commands.success(command.message_id, self._info(agent))
        if command.variant == "HealthCheck":
            healthy = state in PROCESS_ALIVE and agent.node_status != "failed"
            if not healthy and state in ACTIVE:  # lifecycle.rs: an unhealthy active agent is marked Error
                agent.state = S.ERROR
                await self._announce(agent, state, S.ERROR, "health check")
            return commands.success(command.message_id, {"agent_id": agent_id, "healthy": healthy})
        if state not in PROCESS_ALIVE:  # Input: the CLI process must be up to take it
            return commands.error(command.message_id, "Input failed: No process running")
        if self.rich:
            await self._agent_event(agent, "Output", content=texts.output(self.rng, long_ok=True))
        return commands.success(command.message_id, {"agent_id": agent_id, "status": "input_sent"})

    @staticmethod
    def _invalid(command: AgentCommand, state: str) -> dict[str, Any]:
        text = commands.invalid_state(command.variant, state, EXPECTED[command.variant])
        return commands.error(command.message_id, text)

    def _info(self, agent: SimAgent) -> dict[str, Any]:
        """``AgentInfo`` (agent/agent.rs) as serde writes it: id, state, uptime (Duration), config."""
        config = agent.config or dict.fromkeys(tables.CONFIG_KEYS)
        return {
            "id": str(agent.agent_id),
            "state": agent.state,
            "uptime": commands.duration(time.monotonic() - agent.since),
            "config": config,
        }

    async def _spawn(self, command: AgentCommand) -> dict[str, Any]:
        """``Agent::new`` (a fresh id, Created), registered, spawned (Starting -> Running), then Spawned
        with the config as sent, then the reply. The agent lives in this runtime's memory only."""
        agent = self._register(SimAgent(None, "", None, uuid.uuid4(), S.RUNNING, "active", command.config))
        self.stats.agents_spawned += 1
        await self._announce(agent, S.CREATED, S.STARTING, "spawn")
        await self._announce(agent, S.STARTING, S.RUNNING, "spawn")
        await self._send(payloads.runtime_agent_event(agent.agent_id, "Spawned", {"config": command.config}))
        return commands.success(command.message_id, {"agent_id": str(agent.agent_id), "state": "spawned"})

    async def _stop(self, command: AgentCommand, agent: SimAgent) -> dict[str, Any]:
        """A graceful stop needs can_stop (Stopping, then Terminated); a kill takes any state to Terminated.
        The agent leaves the pool, its instances stop and its node is terminated; Terminated is published
        (graceful_stop or forced_stop) before the reply."""
        old = agent.state
        if command.graceful:
            if old not in STOPPABLE:
                return self._invalid(command, old)
            agent.state = S.STOPPING
            await self._announce(agent, old, S.STOPPING, "command")
            if self.rich:
                await pause(self.halt, min(GRACEFUL_STOP_SECONDS, command.timeout_secs or GRACEFUL_STOP_SECONDS))
        async with self.db.transaction(), self.db.cursor() as cur:
            await cur.execute(tables.STOP_INSTANCES, [agent.agent_id])
            if agent.node_id is not None:
                await cur.execute(tables.TERMINATE_NODE, [agent.node_id])
                if agent.parent_id is not None:
                    await tables.upsert_child(cur, agent.parent_id, (agent.node_name, agent.node_id), "Stopped")
        before, agent.state, agent.registered = agent.state, S.TERMINATED, False
        if agent.node_id is not None:
            agent.node_status = "terminated"
        await self._announce(agent, before, S.TERMINATED, "command")
        reason = "graceful_stop" if command.graceful else "forced_stop"
        await self._send(payloads.runtime_agent_event(agent.agent_id, "Terminated", {"reason": reason}))
        return commands.success(command.message_id, {"agent_id": str(agent.agent_id), "state": "stopped"})

    # -- system messages (core NATS on system.control), as SystemMessageHandler answers them ----------

    def _pool_counts(self) -> tuple[int, int, int]:
        """(active_count, max_capacity, available_slots). The pool forgets each spawn's semaphore permit and
        never gives it back on unregister, so available slots only fall: the runtime's own arithmetic."""
        active = sum(agent.registered for agent in self.agents.values())
        capacity = max(POOL_CAPACITY, self.registered_total)
        return active, capacity, max(capacity - self.registered_total, 0)

    async def _on_system(self, message: Any) -> None:
        """Answer PoolStatus and SystemHealth on their reply_to (MessageEnvelope::new: no correlation);
        take "Startup" and "Shutdown" without a word; anything else (RestartNode...) is not ours here."""
        if self.halt.is_set():
            return
        try:
            variant, reply_to = commands.parse_system_message(decode_json(message.data))
        except InvalidMessage:
            return
        if reply_to is None:
            self.stats.system_notices += 1
            return
        active, capacity, available = self._pool_counts()
        if variant == "PoolStatus":
            ids = [agent.agent_id for agent in self.agents.values() if agent.registered]
            data, text = payloads.pool_status(ids, capacity, available), "Pool status retrieved"
        else:
            data, text = payloads.health_data(active, capacity, available), "System health check completed"
        try:
            await self.nc.publish(reply_to, json.dumps(commands.success(None, data, text)).encode())
        except NatsError as error:
            logger.warning("simulator could not answer %s: %s", variant, error)
            return
        self.stats.system_answers += 1
