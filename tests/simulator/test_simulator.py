"""The stand-in runtime (manage.py simulate) against real PostgreSQL and NATS.

The NATS server may keep streams between runs (the machine's NATS in CI), so every check filters by
ids this test created, and every simulator gets a durable consumer of its own, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from agents.events import parse_agent_event
from agents.lifecycle import check_transition
from agents.models import Agent, AgentInstance
from mistersmith.jetstream import client as nats
from mistersmith.simulator.thread import SimulatorOptions, SimulatorThread
from supervision.events import parse_restart_completed, restart_node_command
from supervision.models import (
    FailureReason,
    SupervisionChildState,
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)
from tests.conftest import wait_until
from tests.services import PrivateNats

AGENT_FIELDS = {
    "Spawned": {"config"},
    "StateChanged": {"old_state", "new_state"},
    "Terminated": {"reason"},
    "Error": {"error"},
    "Output": {"content"},
    "Heartbeat": {"timestamp"},
}
ENVELOPE_FIELDS = {"message_id", "timestamp", "source_agent", "target_agent", "correlation_id", "payload"}
TASK_FIELDS = {"event_type", "task_id", "timestamp", "allocation_details", "coordination_metadata"}
DISCOVERY_FIELDS = ["agent_id", "agent_role", "discovery_type", "content", "confidence", "timestamp", "related_to"]
CONFIG_KEYS = ["model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"]
METRICS = {"cpu_percent", "memory_mb", "active_tasks", "queue_depth", "response_time_ms", "error_rate"}


class Listener:
    """Core NATS subscriptions, collecting (subject, JSON, text) in order: on the console's connection,
    or on ``connection`` (a server of the test's own), which it then closes with itself."""

    def __init__(self, connection: nats.SyncNats | None = None) -> None:
        self.own_connection = connection is not None
        self.connection = connection or nats.connection()
        self.received: list[tuple[str, Any, str]] = []
        self._subscriptions: list[Any] = []

    @property
    def messages(self) -> list[tuple[str, Any]]:
        return [(subject, message) for subject, message, _ in list(self.received)]

    def subscribe(self, *subjects: str) -> None:
        async def collect(message) -> None:
            text = message.data.decode()
            self.received.append((message.subject, json.loads(text), text))

        client = self.connection.client()
        for subject in subjects:
            self._subscriptions.append(self.connection.run(client.subscribe(subject, cb=collect)))
        self.connection.run(client.flush())

    def mentioning(self, ids: set[str]) -> list[tuple[str, Any]]:
        return [(s, m) for s, m, text in list(self.received) if any(i in text for i in ids)]

    def answers(self, restart_id: uuid.UUID) -> list[dict]:
        found = []
        for subject, message in self.messages:
            body = message.get("payload", message) if subject == "system.control" else {}
            if body.get("RestartCompleted", {}).get("restart_id") == str(restart_id):
                assert message["correlation_id"] == str(restart_id)
                found.append(body["RestartCompleted"])
        return found

    def close(self) -> None:
        for subscription in self._subscriptions:
            self.connection.run(subscription.unsubscribe())
        if self.own_connection:
            self.connection.close()


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


@pytest.fixture
def simulator(nats_url):
    """Start simulators with test defaults (own consumer, no random failures); stop and clean up after."""
    started: list[SimulatorThread] = []

    def start(**overrides: Any) -> SimulatorThread:
        defaults = {
            "nats_url": nats_url,
            "consumer_name": f"test-simulator-{uuid.uuid4().hex[:10]}",
            "seed": 7,
            "nodes": 12,
            "failure_rate": 0.0,
            "restart_failure_ratio": 0.0,
        }
        thread = SimulatorThread(SimulatorOptions(**(defaults | overrides)))
        thread.start()
        started.append(thread)
        assert thread.ready.wait(30), "simulator did not start"
        assert thread.error is None, thread.error
        return thread

    yield start
    connection = nats.connection()
    for thread in started:
        thread.stop()
        with contextlib.suppress(Exception):
            js = connection.client().jetstream()
            connection.run(js.delete_consumer("SYSTEM_EVENTS", thread.options.consumer_name))
    connections.close_all()


def worker_with_parent(status: str = "failed") -> tuple[SupervisionNode, SupervisionNode, Agent]:
    suffix = uuid.uuid4().hex[:8]
    root = SupervisionNode.objects.create(node_id=f"t-root-{suffix}", node_type="RootSupervisor", status="active")
    agent = Agent.objects.create(name=f"t-agent-{suffix}", status="Error")
    worker = SupervisionNode.objects.create(
        node_id=f"t-worker-{suffix}",
        node_type="Worker",
        node_type_detail="coder",
        agent=agent,
        parent=root,
        status=status,
    )
    return root, worker, agent


def send_restart(restart: SupervisionRestart, *, msg_id: str | None = None) -> None:
    """The command exactly as the console builds it (supervision.events), through JetStream."""
    command = restart_node_command(
        restart_id=restart.pk,
        node_id=restart.node_id,
        node_name=restart.node.node_id,
        attempt=restart.restart_attempt_number,
        delay_ms=restart.restart_delay_ms,
        requested_by="tester",
        reason="test",
    )
    nats.connection().publish("system.control", command, msg_id=msg_id or str(restart.pk))


def check_timestamp(value: Any) -> str:
    if isinstance(value, str):
        datetime.fromisoformat(value)
        return "rfc3339"
    assert set(value) == {"secs_since_epoch", "nanos_since_epoch"}
    assert isinstance(value["secs_since_epoch"], int) and 0 <= value["nanos_since_epoch"] < 1_000_000_000
    return "system_time"


def check_runtime_envelope(message: dict) -> None:
    """``MessageEnvelope::new`` as serde writes it: the six keys in order, a SystemTime, nulls explicit."""
    assert list(message) == ["message_id", "timestamp", "source_agent", "target_agent", "correlation_id", "payload"]
    uuid.UUID(message["message_id"])
    assert check_timestamp(message["timestamp"]) == "system_time"
    assert message["source_agent"] is None and message["target_agent"] is None


def check_agent_event(subject: str, message: dict, seen: set[str]) -> tuple[str, dict]:
    """An event on agent.{uuid}.events: externally tagged, bare or enveloped, fields as the contract says."""
    _, agent_id, _ = subject.split(".")
    body = message
    if "payload" in message and "message_id" in message:
        assert set(message) == ENVELOPE_FIELDS
        uuid.UUID(message["message_id"])
        seen.add(f"envelope:{check_timestamp(message['timestamp'])}")
        body = message["payload"]
    else:
        seen.add("bare")
    ((variant, fields),) = body.items()
    assert set(fields) == AGENT_FIELDS[variant] | {"agent_id"}, (variant, fields)
    assert fields["agent_id"] == agent_id
    if variant == "StateChanged":
        check_transition(fields["old_state"], fields["new_state"])
    if variant == "Heartbeat":
        seen.add(f"heartbeat:{check_timestamp(fields['timestamp'])}")
    assert parse_agent_event(message, subject_agent=agent_id).kind == variant  # the console's own reader
    seen.add(variant)
    return variant, fields


def check_supervision_event(subject: str, message: dict, seen: set[str]) -> None:
    parts = subject.split(".")
    if parts[1] == "tasks":
        assert message["event_type"].lower() == parts[3] and set(message) == TASK_FIELDS
        seen.add("tasks")
        return
    if parts[1] == "error":
        assert message["severity"].lower() == parts[2]
        assert set(message["error_info"]) >= {"error_code", "message", "recovery_suggestions"}
        seen.add("supervision.error")
        return
    _, _, agent_id, family, name = parts
    assert message["agent_id"] == agent_id
    datetime.fromisoformat(message["timestamp"])
    if family == "lifecycle":
        assert message["event_type"].lower() == name
        check_transition(message["previous_state"], message["new_state"])
        assert set(message["metadata"]) == {"trigger", "supervisor_id", "related_task_id", "error_details"}
    else:
        assert message["check_type"].lower() == name.replace("_", "")
        assert 0 <= message["health_score"] <= 1 and set(message["metrics"]) == METRICS
        assert all(alert["severity"] in ("Info", "Warning", "Critical") for alert in message["alerts"])
    seen.add(family)


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_restart_node_with_a_new_instance(simulator, listener):
    root, worker, agent = worker_with_parent()
    restart = SupervisionRestart.objects.create(node=worker, restart_attempt_number=1, restart_delay_ms=50)
    listener.subscribe("system.control", f"agent.{agent.pk}.events")
    sim = simulator(events=False)
    connection = nats.connection()
    js = connection.client().jetstream()
    config = connection.run(js.consumer_info("SYSTEM_EVENTS", sim.options.consumer_name)).config
    assert (config.filter_subject, config.ack_policy, config.ack_wait) == ("system.control", "explicit", 30)
    assert (config.max_deliver, config.max_ack_pending) == (3, 1000)
    send_restart(restart)
    wait_until(lambda: listener.answers(restart.pk), what="RestartCompleted")
    (answer,) = listener.answers(restart.pk)
    assert answer["success"] is True and "error_message" not in answer
    parsed = parse_restart_completed(answer)  # what the console's bridge will read
    assert (parsed.restart_id, parsed.node_id, parsed.success) == (restart.pk, worker.pk, True)
    instance = AgentInstance.objects.get(pk=answer["new_instance_id"])
    assert (instance.agent_id, instance.status) == (agent.pk, "running")
    worker.refresh_from_db()
    agent.refresh_from_db()
    assert worker.status == "active"
    assert agent.status == "Error", "the agent's state reaches the console through events, not a written row"
    child = SupervisionChildState.objects.get(node=root, child_id=worker.node_id)
    assert (child.state, child.restart_count, child.instance_id) == ("Running", 1, instance.pk)
    restart.refresh_from_db()
    assert restart.completed_at is None, "the console completes its own row; the runtime only answers"

    def agent_events() -> list[str]:
        return [next(iter(m.get("payload", m))) for s, m in listener.messages if s.startswith("agent.")]

    wait_until(lambda: len(agent_events()) >= 1, what="the restart's Spawned")
    assert agent_events() == ["Spawned"], "by default no StateChanged: the runtime publishes none"
    ((_, spawned),) = [(s, m) for s, m in listener.messages if s.startswith("agent.")]
    check_runtime_envelope(spawned)
    config = spawned["payload"]["Spawned"]["config"]
    assert list(config) == CONFIG_KEYS and config["memory_limit_mb"] == agent.memory_limit_mb


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_command_is_answered_once_and_other_messages_are_ignored(simulator, listener):
    """Also: a node this database does not hold belongs to another runtime, which answers for it."""
    root, worker, _ = worker_with_parent()
    first = SupervisionRestart.objects.create(node=worker, restart_attempt_number=1, restart_delay_ms=0)
    later = SupervisionRestart.objects.create(node=worker, restart_attempt_number=2, restart_delay_ms=300)
    listener.subscribe("system.control")
    sim = simulator(events=False, restart_failure_ratio=1.0)
    nats.connection().publish("system.control", {"Startup": None}, msg_id=uuid.uuid4().hex)
    send_restart(first)
    send_restart(first, msg_id=f"{first.pk}-redelivered")  # past JetStream's de-duplication
    foreign = uuid.uuid4()
    foreign_command = restart_node_command(
        restart_id=foreign,
        node_id=uuid.uuid4(),
        node_name="elsewhere",
        attempt=1,
        delay_ms=0,
        requested_by="x",
        reason="",
    )
    nats.connection().publish("system.control", foreign_command, msg_id=str(foreign))
    send_restart(later)  # answered after its delay, so after any second answer to the first
    wait_until(lambda: listener.answers(later.pk), what="the later answer")
    (answer,) = listener.answers(first.pk)
    assert answer["success"] is False and answer["error_message"]
    assert "new_instance_id" not in answer
    assert listener.answers(foreign) == []
    wait_until(lambda: sim.stats.restarts_failed == 2, what="both restarts counted")  # counted after the answer
    assert sim.stats.duplicate_commands == 1 and sim.stats.ignored_messages >= 2
    assert sim.stats.restarts_ok == 0
    worker.refresh_from_db()
    assert worker.status == "failed"
    child = SupervisionChildState.objects.get(node=root, child_id=worker.node_id)
    assert (child.state, child.restart_count, child.error_count) == ("Failed", 2, 2)
    assert not AgentInstance.objects.filter(agent=worker.agent_id).exists()


@pytest.fixture
def private_nats(tmp_path, stop_after):
    return stop_after(PrivateNats(tmp_path).start())


@pytest.mark.django_db(transaction=True)
def test_it_never_publishes_faster_than_its_rate(simulator, private_nats):
    """Every message counted, on a NATS server of the test's own: not all of them name an agent (a
    task allocation Requested may name none), so on the shared server they could not be told apart
    from other publishers' ones."""
    listener = Listener(nats.SyncNats(private_nats.url, create_streams=False))
    try:
        listener.subscribe("agent.>", "supervision.>")
        sim = simulator(
            nats_url=private_nats.url, rate=40, failure_rate=3, duration=2.5, restarts=False, rich_events=True
        )
        sim.join(30)
        assert not sim.is_alive() and sim.error is None
        published = sim.stats.events_published
        answers = sim.stats.command_events_published  # a supervisor's restart: Spawned and its moves, unbudgeted
        wait_until(lambda: len(listener.received) >= published + answers, what="every event to arrive")
        assert len(listener.received) == published + answers
    finally:
        listener.close()
    assert published <= 40 * sim.stats.elapsed_seconds + sim.options.burst
    assert published >= 40 * 2.5 * 0.6, "the budget should be used, not just respected"
    assert sim.stats.failures_injected >= 1


@pytest.mark.django_db(transaction=True)
def test_failures_are_healed_by_their_policy_then_escalated(simulator, listener):
    """Each failure is written as the runtime writes it; the supervisor restarts the node after
    calculate_restart_delay while should_restart says yes (the node active again), then escalates."""
    listener.subscribe("agent.>")
    sim = simulator(nodes=6, events=False, failure_rate=20, rate=0)
    agent_nodes = SupervisionNode.objects.filter(agent__isnull=False)
    assert SupervisionNode.objects.filter(node_type="RootSupervisor", parent=None).count() == 1
    assert SupervisionPolicy.objects.count() == sim.stats.nodes_created == 6
    escalated = SupervisionFailure.objects.filter(escalated_to_parent=True)
    wait_until(lambda: escalated.count() == agent_nodes.count(), timeout=30, what="every agent node escalated")
    sim.stop()
    assert sim.stats.escalations == agent_nodes.count() and sim.stats.supervisor_restarts_failed == 0
    assert sim.stats.failures_injected == SupervisionFailure.objects.count() == 5 * agent_nodes.count()
    with connections["default"].cursor() as cursor:  # every restart as the SQL rules say, attempts 1..4
        cursor.execute(
            """
            SELECT r.node_id, array_agg(r.restart_attempt_number ORDER BY r.started_at),
                   bool_and(r.restart_delay_ms = calculate_restart_delay(p.id, r.restart_attempt_number)),
                   bool_and(r.success AND r.completed_at >= r.started_at + r.restart_delay_ms * interval '1 ms'),
                   bool_and(r.new_instance_id IS NOT NULL)
            FROM supervision_restarts r JOIN supervision_policies p ON p.node_id = r.node_id
            GROUP BY r.node_id
            """
        )
        rows = cursor.fetchall()
    assert len(rows) == agent_nodes.count()
    assert all(row[1:] == ([1, 2, 3, 4], True, True, True) for row in rows), rows
    assert set(SupervisionRestart.objects.values_list("restart_delay_ms", flat=True)) == {100, 200, 400, 800}
    for node in agent_nodes:
        failures = list(SupervisionFailure.objects.filter(node=node).order_by("occurred_at"))
        assert [f.restart_attempted for f in failures] == [True] * 4 + [False]
        assert (
            failures[-1].escalated_to_parent and failures[-1].recovery_action == f"escalated to {node.parent.node_id}"
        )
        for failure in failures:
            assert failure.failure_reason in FailureReason.values and 0 < len(failure.failure_detail) <= 5000
            assert failure.context["agent_id"] == str(node.agent_id) and failure.correlation_id
        assert node.status == "failed"
        child = SupervisionChildState.objects.get(child_node=node)
        assert (child.state, child.error_count, child.restart_count) == ("Failed", 5, 4)
        assert set(AgentInstance.objects.filter(agent=node.agent).values_list("status", flat=True)) == {"crashed"}
        assert node.agent.status == "Running", "the stand-in never writes the agents table's state"

    ours = {str(node.agent_id) for node in agent_nodes}

    def spawned() -> list[str]:
        return [s.split(".")[1] for s, m in listener.mentioning(ours) if "Spawned" in m.get("payload", {})]

    wait_until(lambda: len(spawned()) == 4 * agent_nodes.count(), what="a Spawned per successful restart")
    assert {v for s, m in listener.mentioning(ours) for v in m.get("payload", m)} == {"Spawned"}, "nothing else"


@pytest.mark.django_db(transaction=True)
def test_events_follow_the_contract(simulator, listener):
    listener.subscribe("agent.>", "supervision.>")
    sim = simulator(rate=400, failure_rate=4, restarts=False, rich_events=True)
    ours = {str(pk) for pk in Agent.objects.values_list("pk", flat=True)}

    def enough() -> bool:
        subjects = [subject for subject, _ in listener.mentioning(ours)]
        return len(subjects) >= 300 and any(s.startswith("supervision.error.") for s in subjects)

    wait_until(enough, what="300 events and a failure")
    sim.stop()
    seen: set[str] = set()
    last_state: dict[str, str] = {}
    for subject, message in listener.mentioning(ours):
        if subject.startswith("supervision."):
            check_supervision_event(subject, message, seen)
            continue
        variant, fields = check_agent_event(subject, message, seen)
        if variant == "StateChanged":  # each agent's announced states follow one another (or a restart begins)
            previous = last_state.get(fields["agent_id"])
            assert previous in (None, fields["old_state"]) or fields["old_state"] == "Created"
            last_state[fields["agent_id"]] = fields["new_state"]
    assert {"bare", "envelope:rfc3339", "envelope:system_time", "heartbeat:system_time"} <= seen
    assert {"StateChanged", "Heartbeat", "Output", "Error", "lifecycle", "health", "supervision.error"} <= seen
    tasks = [m for s, m in listener.mentioning(ours) if s.startswith("supervision.tasks.allocation.")]
    assert tasks and all(set(m) == TASK_FIELDS for m in tasks)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("--rate", "-1", "--rate must be a number ≥ 0"),
        ("--failure-rate", "-0.5", "--failure-rate must be a number ≥ 0"),
        ("--restart-failure-ratio", "1.5", "--restart-failure-ratio must be between 0 and 1"),
        ("--restart-failure-ratio", "-0.1", "--restart-failure-ratio must be between 0 and 1"),
        ("--duration", "nan", "--duration must be a number ≥ 0"),
        ("--nodes", "1", "--nodes must be at least 2"),
        ("--consumer-name", "a.b", "--consumer-name may hold"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(argument, value, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate", argument, value)


@pytest.mark.django_db(transaction=True)
def test_the_command_runs_for_its_duration_and_reports(nats_url):
    consumer = f"test-simulator-{uuid.uuid4().hex[:10]}"
    out = io.StringIO()
    try:
        call_command(
            "simulate", "--duration", "1", "--nodes", "5", "--seed", "3", "--consumer-name", consumer, stdout=out
        )
    finally:
        connection = nats.connection()
        with contextlib.suppress(Exception):
            connection.run(connection.client().jetstream().delete_consumer("SYSTEM_EVENTS", consumer))
        connections.close_all()
    assert "Simulated:" in out.getvalue() and "5 nodes created" in out.getvalue()
    assert SupervisionNode.objects.count() == 5


# -- agent commands on agent.command (core NATS request/reply) ------------------------------------------


def agent_command(variant: str, fields: dict, *, message_id: str | None = None) -> dict:
    """A MessageEnvelope<AgentCommand> as the runtime deserialises it (SystemTime timestamp)."""
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "timestamp": {"secs_since_epoch": 1_700_000_000, "nanos_since_epoch": 0},
        "source_agent": None,
        "target_agent": None,
        "correlation_id": None,
        "payload": {variant: fields},
    }


def request(body: dict | bytes, timeout: float = 5) -> dict:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return json.loads(nats.connection().request("agent.command", data, timeout=timeout).data)


def success(data: dict) -> dict:
    return {"Success": {"message": "Command executed successfully", "data": data}}


def refusal(text: str) -> dict:
    return {"Error": {"error": text, "code": None}}


@pytest.mark.django_db(transaction=True)
def test_it_answers_agent_commands_as_the_runtime_handler(simulator, listener):
    """Replies of handler.rs byte for byte; its state in memory (the agents row is the console's);
    events only where the handler publishes them: Terminated after the stop, before the reply."""
    agent = Agent.objects.create(name="t-commanded", status="Running", memory_limit_mb=None)
    listener.subscribe(f"agent.{agent.pk}.events", f"supervision.agent.{agent.pk}.>")
    sim = simulator(restarts=False)
    pk = str(agent.pk)

    def send(variant: str, **fields: Any) -> dict:
        command = agent_command(variant, {"agent_id": pk, **fields})
        answer = request(command)
        check_runtime_envelope(answer)
        assert answer["correlation_id"] == command["message_id"]
        return answer["payload"]

    assert send("Pause") == success({"agent_id": pk, "state": "paused"})
    invalid = "Invalid state transition: current=paused, expected=Running or Idle"
    assert send("Pause") == refusal(f"Pause failed: {invalid}")
    status = send("Status", reply_to="x")["Success"]["data"]
    assert list(status) == ["id", "state", "uptime", "config"] and (status["id"], status["state"]) == (pk, "Paused")
    assert set(status["uptime"]) == {"secs", "nanos"} and list(status["config"]) == CONFIG_KEYS
    assert status["config"]["memory_limit_mb"] is None and status["config"]["max_turns"] is None
    assert send("Resume") == success({"agent_id": pk, "state": "running"})
    expected = "Invalid state transition: current=running, expected=Paused"
    assert send("Resume") == refusal(f"Resume failed: {expected}")
    assert send("Input", content="hello") == success({"agent_id": pk, "status": "input_sent"})
    assert send("HealthCheck", reply_to="x") == success({"agent_id": pk, "healthy": True})
    agent.refresh_from_db()
    assert agent.status == "Running", "the stand-in writes no agent state: the console applies replies"
    stop = send("Stop", graceful=True, timeout={"secs": 5, "nanos": 0})
    assert stop == success({"agent_id": pk, "state": "stopped"})
    assert send("Stop", graceful=False, timeout=None) == refusal(f"Agent not found: agent-{pk}")
    assert send("Status", reply_to="x") == refusal(f"Agent not found: agent-{pk}")

    wait_until(lambda: len(listener.messages) >= 1, what="the Terminated event")
    ((subject, event),) = listener.messages
    check_runtime_envelope(event)
    assert (subject, event["correlation_id"]) == (f"agent.{pk}.events", None)
    assert event["payload"] == {"Terminated": {"agent_id": pk, "reason": "graceful_stop"}}
    assert parse_agent_event(event, subject_agent=pk).kind == "Terminated"
    assert sim.stats.commands_ok == 6 and sim.stats.commands_refused == 4
    assert sim.stats.events_published == 0


@pytest.mark.django_db(transaction=True)
def test_spawn_runs_an_agent_and_publishes_spawned(simulator, listener):
    listener.subscribe("agent.*.events")
    simulator(restarts=False)
    config = {"model": "claude-test", "enable_mcp": False, "timeout_seconds": 60, "allowed_tools": ["Read"]}
    command = agent_command("Spawn", {"config": config, "reply_to": None})
    answer = request(command)
    check_runtime_envelope(answer)
    data = answer["payload"]["Success"]["data"]
    assert list(data) == ["agent_id", "state"] and data["state"] == "spawned"
    new_id = data["agent_id"]
    wait_until(lambda: listener.mentioning({new_id}), what="the Spawned event")
    ((subject, event),) = listener.mentioning({new_id})
    check_runtime_envelope(event)
    full = {"model": "claude-test", "max_turns": None, "allowed_tools": ["Read"], "enable_mcp": False}
    full |= {"timeout_seconds": 60, "memory_limit_mb": None}
    assert subject == f"agent.{new_id}.events"
    assert json.dumps(event["payload"]) == json.dumps({"Spawned": {"agent_id": new_id, "config": full}})
    status = request(agent_command("Status", {"agent_id": new_id, "reply_to": "x"}))["payload"]["Success"]["data"]
    assert status["state"] == "Running" and status["config"] == full
    kill = request(agent_command("Stop", {"agent_id": new_id, "graceful": False, "timeout": None}))
    assert kill["payload"] == success({"agent_id": new_id, "state": "stopped"})
    wait_until(lambda: len(listener.mentioning({new_id})) == 2, what="the Terminated event")
    assert listener.mentioning({new_id})[1][1]["payload"] == {
        "Terminated": {"agent_id": new_id, "reason": "forced_stop"}
    }
    assert not Agent.objects.filter(pk=new_id).exists(), "a spawned agent lives in the runtime's memory"


@pytest.mark.django_db(transaction=True)
def test_rich_events_announce_every_commanded_move(simulator, listener):
    agent = Agent.objects.create(name="t-rich", status="Running")
    listener.subscribe(f"agent.{agent.pk}.events", f"supervision.agent.{agent.pk}.lifecycle.*")
    simulator(events=False, restarts=False, rich_events=True)
    pk = str(agent.pk)
    assert "Success" in request(agent_command("Pause", {"agent_id": pk}))["payload"]
    assert "Success" in request(agent_command("Resume", {"agent_id": pk}))["payload"]
    stop = {"agent_id": pk, "graceful": True, "timeout": {"secs": 5, "nanos": 0}}
    assert "Success" in request(agent_command("Stop", stop))["payload"]

    def events() -> list[tuple[str, Any]]:
        found = []
        for subject, message in listener.messages:
            if subject.endswith(".events"):
                variant, fields = check_agent_event(subject, message, set())
                found.append((variant, fields.get("reason") or (fields.get("old_state"), fields.get("new_state"))))
        return found

    wait_until(lambda: len(events()) >= 5, what="the commanded moves' events")
    assert events() == [
        ("StateChanged", ("Running", "Paused")),
        ("StateChanged", ("Paused", "Running")),
        ("StateChanged", ("Running", "Stopping")),
        ("StateChanged", ("Stopping", "Terminated")),
        ("Terminated", "graceful_stop"),
    ]
    wait_until(lambda: len([s for s, _ in listener.messages if s.startswith("supervision.")]) >= 4, what="lifecycle")
    lifecycle = [s.rsplit(".", 1)[-1] for s, _ in listener.messages if s.startswith("supervision.")]
    assert lifecycle == ["paused", "resumed", "terminating", "terminated"]


@pytest.mark.django_db(transaction=True)
def test_commands_the_runtime_cannot_read_get_no_reply(simulator):
    """The handler returns its parse error before replying: no answer, as from the runtime."""
    agent = Agent.objects.create(name="t-strict", status="Running")
    sim = simulator(events=False, restarts=False)
    pk = str(agent.pk)
    unreadable = [
        {"Pause": {"agent_id": pk}},  # no envelope
        agent_command("Pause", {"agent_id": pk}) | {"timestamp": "2026-01-01T00:00:00Z"},
        agent_command("Status", {"agent_id": pk}),  # no reply_to
        agent_command("Stop", {"agent_id": pk, "graceful": True, "timeout": 5}),
        agent_command("Spawn", {"config": {"model": "m"}, "reply_to": None}),  # enable_mcp, timeout_seconds missing
        b"not json",
    ]
    for body in unreadable:
        with pytest.raises(nats.NatsUnavailable):
            request(body, timeout=0.5)
    assert sim.stats.commands_unreadable == len(unreadable)
    with pytest.raises(nats.NatsUnavailable):  # another runtime's agent: this one stays silent
        request(agent_command("Pause", {"agent_id": str(uuid.uuid4())}), timeout=0.5)
    assert "Success" in request(agent_command("Pause", {"agent_id": pk}))["payload"]


def system_request(variant: str, reply_to: str) -> dict:
    return agent_command(variant, {"reply_to": reply_to}) | {"payload": {variant: {"reply_to": reply_to}}}


@pytest.mark.django_db(transaction=True)
def test_it_answers_system_health_and_pool_status_on_reply_to(simulator, listener):
    sim = simulator(nodes=5, restarts=False)
    inbox = f"test.replies.{uuid.uuid4().hex}"
    listener.subscribe(inbox, "system.health")
    ours = {str(a) for a in Agent.objects.values_list("pk", flat=True)}
    connection = nats.connection()
    for notice in ("Startup", "Shutdown"):
        connection.publish("system.control", agent_command("x", {}) | {"payload": notice}, msg_id=uuid.uuid4().hex)
    connection.publish("system.control", system_request("SystemHealth", inbox), msg_id=uuid.uuid4().hex)
    connection.publish("system.control", system_request("PoolStatus", inbox), msg_id=uuid.uuid4().hex)
    wait_until(lambda: len([s for s, _ in listener.messages if s == inbox]) >= 2, what="both answers")
    health, pool = [m for s, m in listener.messages if s == inbox][:2]
    for answer in (health, pool):
        check_runtime_envelope(answer)
        assert answer["correlation_id"] is None  # MessageEnvelope::new, no with_correlation
    assert health["payload"] == {
        "Success": {
            "message": "System health check completed",
            "data": {
                "pool_active": len(ours),
                "pool_capacity": 100,
                "pool_available": 100 - len(ours),
                "healthy": True,
            },
        }
    }
    assert pool["payload"]["Success"]["message"] == "Pool status retrieved"
    data = pool["payload"]["Success"]["data"]
    assert list(data) == ["active_count", "max_capacity", "available_slots", "agents"]
    assert (data["active_count"], data["max_capacity"], set(data["agents"])) == (len(ours), 100, ours)
    wait_until(lambda: sim.stats.system_notices == 2, what="Startup and Shutdown taken")
    assert sim.stats.system_answers == 2
    assert not [s for s, _ in listener.messages if s == "system.health"], "the runtime publishes nothing there"


@pytest.mark.django_db(transaction=True)
def test_by_default_it_sends_only_what_the_runtime_sends(simulator, listener):
    listener.subscribe("agent.>", "supervision.>", "system.health", "discoveries.>")
    sim = simulator(nodes=8, failure_rate=5, rate=500, restarts=False)
    ours = {str(a) for a in Agent.objects.values_list("pk", flat=True)}
    wait_until(lambda: sim.stats.supervisor_restarts_ok >= 3, what="failures healed by their supervisors")
    wait_until(lambda: any(s.startswith("discoveries.") for s, _ in listener.mentioning(ours)), what="a discovery")
    sim.stop()
    from agents.discoveries import parse_discovery

    for subject, message in listener.mentioning(ours):
        if subject.startswith("discoveries."):
            found = parse_discovery(message)
            assert list(message) == list(DISCOVERY_FIELDS) and message["agent_id"] == str(found.agent_id)
            assert subject in ("discoveries.questions", "discoveries.insights", "discoveries.connections")
            assert (subject == "discoveries.questions") == (message["discovery_type"] == "Question")
            continue
        assert subject.startswith("agent.") and subject.endswith(".events"), subject
        check_runtime_envelope(message)
        assert set(message["payload"]) == {"Spawned"}
    assert sim.stats.events_published == 0
    assert not [s for s, _ in listener.messages if s == "system.health"]


@pytest.mark.django_db(transaction=True)
def test_instance_heartbeats_move_for_running_instances(simulator):
    sim = simulator(nodes=6, restarts=False, heartbeat_interval=0.2)
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE agent_instances SET last_heartbeat = now() - interval '1 hour'")
        cursor.execute("UPDATE supervision_child_states SET last_heartbeat = now() - interval '1 hour'")
    stopped = AgentInstance.objects.filter(status="running").first()
    stopped.status = "stopped"
    stopped.save(update_fields=["status"])
    running = AgentInstance.objects.filter(status="running")
    assert running.exists()
    batches = sim.stats.heartbeat_batches
    wait_until(lambda: sim.stats.heartbeat_batches >= batches + 2, what="two heartbeat batches")
    recent = timezone.now() - timedelta(seconds=30)
    assert not running.filter(last_heartbeat__lt=recent).exists(), "every running instance beat"
    stopped.refresh_from_db()
    assert stopped.last_heartbeat < recent, "a stopped instance does not beat"
    agents_children = SupervisionChildState.objects.filter(state="Running", child_node__agent__isnull=False)
    assert agents_children.exists() and not agents_children.filter(last_heartbeat__lt=recent).exists()
    assert not Agent.objects.filter(last_heartbeat__gte=recent).exists(), "agents' heartbeats come from events"


@pytest.mark.django_db(transaction=True)
def test_rich_events_share_discoveries_and_report_the_pool_on_system_health(simulator, listener):
    listener.subscribe("discoveries.>", "system.health")
    sim = simulator(rate=20, failure_rate=0, restarts=False, rich_events=True)
    ours = {str(a) for a in Agent.objects.values_list("pk", flat=True)}
    wait_until(lambda: any(s == "system.health" for s, _ in listener.messages), what="a health report")
    wait_until(lambda: listener.mentioning(ours), what="a discovery")
    sim.stop()
    from agents.discoveries import parse_discovery

    for subject, body in listener.messages:
        if subject == "system.health":
            assert body["pool_active"] + body["pool_available"] <= body["pool_capacity"] and body["healthy"]
    for subject, body in listener.mentioning(ours):
        if subject.startswith("discoveries."):
            found = parse_discovery(body)  # the contract's shape, or InvalidMessage
            assert subject == f"discoveries.{found.agent_id}.{subject.rsplit('.', 1)[-1]}"


def test_texts_vary_in_content_and_length():
    import random as random_module

    from mistersmith.simulator import texts

    rng = random_module.Random(5)
    outputs = [texts.output(rng, long_ok=True) for _ in range(300)]
    contents = [texts.discovery_content(rng, long_ok=True) for _ in range(300)]
    for found, limit in ((outputs, 1_000_000), (contents, 60_000)):
        assert len(set(found)) > 150, "not the same few strings"
        lengths = sorted(len(text) for text in found)
        assert lengths[0] < 100 and lengths[-1] > 10_000 and lengths[-1] < limit
        assert any(300 < length < 5000 for length in lengths)
    short = [texts.discovery_content(rng, long_ok=False) for _ in range(200)]
    assert max(len(text) for text in short) < 5000, "long texts only under --rich-events"
    again = random_module.Random(5)
    assert texts.output(again, long_ok=True) == outputs[0], "the seed decides"
