"""The stand-in runtime (manage.py simulate) against real PostgreSQL and NATS.

The NATS server may keep streams between runs (the machine's NATS in CI), so every check filters by
ids this test created, and every simulator gets a durable consumer of its own, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from agents.events import parse_agent_event
from agents.lifecycle import check_transition
from agents.models import Agent, AgentInstance
from mistersmith import nats
from mistersmith.simulator import SimulatorOptions, SimulatorThread
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

AGENT_FIELDS = {
    "Spawned": {"config"},
    "StateChanged": {"old_state", "new_state"},
    "Terminated": {"reason"},
    "Error": {"error"},
    "Output": {"content"},
    "Heartbeat": {"timestamp"},
}
ENVELOPE_FIELDS = {"message_id", "timestamp", "source_agent", "target_agent", "correlation_id", "payload"}
METRICS = {"cpu_percent", "memory_mb", "active_tasks", "queue_depth", "response_time_ms", "error_rate"}


class Listener:
    """Core NATS subscriptions on the console's connection, collecting (subject, JSON, text) in order."""

    def __init__(self) -> None:
        self.connection = nats.connection()
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
    assert (worker.status, agent.status) == ("active", "Running")
    child = SupervisionChildState.objects.get(node=root, child_id=worker.node_id)
    assert (child.state, child.restart_count, child.instance_id) == ("Running", 1, instance.pk)
    restart.refresh_from_db()
    assert restart.completed_at is None, "the console completes its own row; the runtime only answers"

    def agent_events() -> list[str]:
        return [next(iter(m.get("payload", m))) for s, m in listener.messages if s.startswith("agent.")]

    wait_until(lambda: len(agent_events()) >= 3, what="the restart's agent events")
    assert agent_events() == ["Spawned", "StateChanged", "StateChanged"]


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


@pytest.mark.django_db(transaction=True)
def test_it_never_publishes_faster_than_its_rate(simulator, listener):
    listener.subscribe("agent.>", "supervision.>")
    sim = simulator(rate=40, failure_rate=3, duration=2.5, restarts=False)
    sim.join(30)
    assert not sim.is_alive() and sim.error is None
    ours = {str(pk) for pk in Agent.objects.values_list("pk", flat=True)}
    published = sim.stats.events_published
    wait_until(lambda: len(listener.mentioning(ours)) >= published, what="every published event to arrive")
    assert len(listener.mentioning(ours)) == published
    assert published <= 40 * sim.stats.elapsed_seconds + sim.options.burst
    assert published >= 40 * 2.5 * 0.6, "the budget should be used, not just respected"
    assert sim.stats.failures_injected >= 1


@pytest.mark.django_db(transaction=True)
def test_failures_are_written_the_way_the_runtime_writes_them(simulator, listener):
    listener.subscribe("agent.>")
    sim = simulator(nodes=6, events=False, failure_rate=50, rate=500)
    agent_nodes = SupervisionNode.objects.filter(agent__isnull=False)
    assert SupervisionNode.objects.filter(node_type="RootSupervisor", parent=None).count() == 1
    assert SupervisionPolicy.objects.count() == sim.stats.nodes_created == 6
    wait_until(lambda: not agent_nodes.exclude(status="failed").exists(), what="every agent node failed")
    failed_agents = {str(a) for a in agent_nodes.values_list("agent_id", flat=True)}

    def errors_seen() -> set[str]:
        return {s.split(".")[1] for s, m in listener.messages if "Error" in m.get("payload", m)}

    wait_until(lambda: errors_seen() >= failed_agents, what="an Error event for every failed agent")
    sim.stop()
    assert sim.stats.failures_injected == len(failed_agents) == SupervisionFailure.objects.count()
    for failure in SupervisionFailure.objects.select_related("node", "node__agent"):
        assert failure.failure_reason in FailureReason.values
        assert 0 < len(failure.failure_detail) <= 5000
        assert failure.context["agent_id"] == str(failure.node.agent_id) and failure.correlation_id
        assert failure.node.agent.status in ("Error", "Terminated")
        child = SupervisionChildState.objects.get(child_node=failure.node)
        assert (child.state, child.error_count) == ("Failed", 1)
        assert set(AgentInstance.objects.filter(agent=failure.node.agent).values_list("status", flat=True)) == {
            "crashed"
        }


@pytest.mark.django_db(transaction=True)
def test_events_follow_the_contract(simulator, listener):
    listener.subscribe("agent.>", "supervision.>")
    sim = simulator(rate=400, failure_rate=4, restarts=False)
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
        if variant == "StateChanged":  # each agent's announced states follow one another
            previous = last_state.get(fields["agent_id"])
            assert previous in (None, fields["old_state"])
            last_state[fields["agent_id"]] = fields["new_state"]
    assert {"bare", "envelope:rfc3339", "envelope:system_time", "heartbeat:system_time"} <= seen
    assert {"StateChanged", "Heartbeat", "Output", "Error", "lifecycle", "health", "supervision.error"} <= seen


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


@pytest.mark.django_db(transaction=True)
def test_it_answers_agent_commands_and_moves_the_agent(simulator, listener):
    agent = Agent.objects.create(name="t-commanded", status="Running")
    listener.subscribe(f"agent.{agent.pk}.events", f"supervision.agent.{agent.pk}.lifecycle.*")
    sim = simulator(events=False, restarts=False)
    command = agent_command("Pause", {"agent_id": str(agent.pk)})
    answer = request(command)
    assert answer["correlation_id"] == command["message_id"]
    assert set(answer) == ENVELOPE_FIELDS and check_timestamp(answer["timestamp"]) == "system_time"
    assert answer["payload"] == {
        "Success": {"message": "Command executed successfully", "data": {"agent_id": str(agent.pk), "state": "paused"}}
    }
    agent.refresh_from_db()
    assert agent.status == "Paused"
    refused = request(agent_command("Pause", {"agent_id": str(agent.pk)}))["payload"]["Error"]
    assert refused == {"error": "Pause failed: cannot pause an agent in state Paused", "code": 409}
    assert request(agent_command("Resume", {"agent_id": str(agent.pk)}))["payload"]["Success"]["data"]["state"] == (
        "running"
    )
    status = request(agent_command("Status", {"agent_id": str(agent.pk), "reply_to": "x"}))["payload"]["Success"]
    assert status["data"]["state"] == "Running" and set(status["data"]["config"]) >= {"model", "timeout_seconds"}
    health = request(agent_command("HealthCheck", {"agent_id": str(agent.pk), "reply_to": "x"}))["payload"]
    assert health["Success"]["data"]["healthy"] is True
    stop = {"agent_id": str(agent.pk), "graceful": True, "timeout": {"secs": 5, "nanos": 0}}
    assert request(agent_command("Stop", stop))["payload"]["Success"]["data"]["state"] == "stopped"
    agent.refresh_from_db()
    assert agent.status == "Terminated"
    after = request(agent_command("Resume", {"agent_id": str(agent.pk)}))["payload"]["Error"]["error"]
    assert after == "Resume failed: cannot resume an agent in state Terminated"
    assert not request(agent_command("HealthCheck", {"agent_id": str(agent.pk), "reply_to": "x"}))["payload"][
        "Success"
    ]["data"]["healthy"]

    def events() -> list[tuple[str, Any]]:
        found = []
        for subject, message in listener.messages:
            if subject.endswith(".events"):
                seen: set[str] = set()
                variant, fields = check_agent_event(subject, message, seen)
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
    lifecycle = [s.rsplit(".", 1)[-1] for s, _ in listener.messages if s.startswith("supervision.")]
    assert lifecycle == ["paused", "resumed", "terminating", "terminated"]
    assert sim.stats.commands_ok == 6 and sim.stats.commands_refused == 2
    assert sim.stats.events_published == 0, "commanded moves are answers, outside the chatter's budget"


@pytest.mark.django_db(transaction=True)
def test_commands_are_read_as_strictly_as_the_runtime_reads_them(simulator):
    agent = Agent.objects.create(name="t-strict", status="Running")
    simulator(events=False, restarts=False)
    bare = request({"Pause": {"agent_id": str(agent.pk)}})["payload"]["Error"]
    assert bare["code"] == 400 and "missing field `message_id`" in bare["error"]
    rfc3339 = agent_command("Pause", {"agent_id": str(agent.pk)}) | {"timestamp": "2026-01-01T00:00:00Z"}
    assert "SystemTime" in request(rfc3339)["payload"]["Error"]["error"]
    no_reply_to = request(agent_command("Status", {"agent_id": str(agent.pk)}))["payload"]["Error"]["error"]
    assert "missing field `reply_to`" in no_reply_to
    bad_timeout = agent_command("Stop", {"agent_id": str(agent.pk), "graceful": True, "timeout": 5})
    assert "Duration" in request(bad_timeout)["payload"]["Error"]["error"]
    assert request(b"not json")["payload"]["Error"]["code"] == 400
    spawn = request(agent_command("Spawn", {"config": {}, "reply_to": None}))["payload"]["Error"]
    assert spawn["code"] == 501
    agent.refresh_from_db()
    assert agent.status == "Running"
    with pytest.raises(nats.NatsUnavailable):  # another runtime's agent: this one stays silent
        request(agent_command("Pause", {"agent_id": str(uuid.uuid4())}), timeout=0.5)


@pytest.mark.django_db(transaction=True)
def test_it_shares_discoveries_and_reports_the_pool_on_system_health(simulator, listener):
    listener.subscribe("discoveries.>", "system.health")
    sim = simulator(rate=20, failure_rate=0, restarts=False)
    wait_until(lambda: any(s == "system.health" for s, _ in listener.messages), what="a health report")
    wait_until(lambda: any(s.startswith("discoveries.") for s, _ in listener.messages), what="a discovery")
    sim.stop()
    from agents.discoveries import parse_discovery

    for subject, body in listener.messages:
        if subject == "system.health":
            assert body["pool_active"] + body["pool_available"] == body["pool_capacity"] and body["healthy"]
        else:
            found = parse_discovery(body)  # the contract's shape, or InvalidMessage
            assert subject == f"discoveries.{found.agent_id}.{subject.rsplit('.', 1)[-1]}"
