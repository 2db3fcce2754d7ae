"""Replies are state (issue 11 item 2): a tiny responder on real NATS answers ``agent.command`` with the
bytes the runtime's handler (src/message/handler.rs) writes, and the console, on real PostgreSQL,
applies what the reply means: Pause and Resume move the agent and publish the StateChanged the
runtime never sends; Stop waits for the Terminated event; HealthCheck and Status are shown; an Error
reply's text is kept."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.admin.models import LogEntry

from agents.commands import BadReply, send_agent_command
from agents.events import parse_agent_event
from agents.models import Agent, AgentAnomaly, AgentCommandRecord
from agents.projections import apply_agent_events
from agents.services import apply_reply_move
from mistersmith.jetstream import client as nats
from tests.agents.test_commands import Subscriber, reply_to
from tests.conftest import wait_until
from tests.live.payloads import runtime_config

pytestmark = pytest.mark.django_db(transaction=True)


def success(data: dict | None) -> dict:
    return {"Success": {"message": "Command executed successfully", "data": data}}


class Runtime:
    """Answers like handler.rs's process_agent_command; ``state`` is the runtime's own agent state."""

    def __init__(self, state: str = "Running", *, healthy: bool = True, refuse: str | None = None) -> None:
        self.state, self.healthy, self.refuse = state, healthy, refuse

    def __call__(self, request: dict) -> bytes:
        ((command, body),) = request["payload"].items()
        agent_id = body["agent_id"]
        if self.refuse:
            return reply_to(request, {"Error": {"error": self.refuse, "code": None}})
        if command == "Pause":
            self.state = "Paused"
            return reply_to(request, success({"agent_id": agent_id, "state": "paused"}))
        if command == "Resume":
            self.state = "Running"
            return reply_to(request, success({"agent_id": agent_id, "state": "running"}))
        if command == "Stop":
            self.state = "Terminated"
            return reply_to(request, success({"agent_id": agent_id, "state": "stopped"}))
        if command == "HealthCheck":
            return reply_to(request, success({"agent_id": agent_id, "healthy": self.healthy}))
        info = {"id": agent_id, "state": self.state, "uptime": {"secs": 3725, "nanos": 5}, "config": runtime_config()}
        return reply_to(request, success(info))


def state_changes(events: Subscriber) -> list[dict]:
    return [body for body in events.bodies() if "StateChanged" in body.get("payload", {})]


def test_pause_and_resume_replies_move_the_agent_and_publish_state_changed(subscribe, operator):
    agent = Agent.objects.create(name="replies", status="Running")
    subscribe("agent.command", Runtime("Running"))
    events = Subscriber(f"agent.{agent.pk}.events")
    try:
        paused = send_agent_command(operator, agent, "pause")
        assert paused.ok and paused.state == "Paused"
        assert Agent.objects.get(pk=agent.pk).status == "Paused"
        assert "now Paused (was Running)" in paused.summary
        assert paused.record.outcome == "ok" and "now Paused" in paused.record.detail
        entry = LogEntry.objects.filter(object_id=str(agent.pk)).latest("action_time")
        assert entry.user == operator and "now Paused" in entry.change_message  # who asked, and what moved

        resumed = send_agent_command(operator, agent, "resume")  # refused before: the console had it Running
        assert resumed.ok and Agent.objects.get(pk=agent.pk).status == "Running"

        wait_until(lambda: len(state_changes(events)) >= 2, what="the two StateChanged events")
        published = state_changes(events)
        assert [m["payload"]["StateChanged"] for m in published] == [
            {"agent_id": str(agent.pk), "old_state": "Running", "new_state": "Paused"},
            {"agent_id": str(agent.pk), "old_state": "Paused", "new_state": "Running"},
        ]
        for message in published:  # the runtime's envelope, so every reader (and the runtime) can parse it
            assert list(message) == [
                "message_id",
                "timestamp",
                "source_agent",
                "target_agent",
                "correlation_id",
                "payload",
            ]
            assert set(message["timestamp"]) == {"secs_since_epoch", "nanos_since_epoch"}
            assert message["source_agent"] is None and uuid.UUID(message["message_id"])
    finally:
        events.close()
    # The bridge, meeting these events, finds the agent already there: applied once, no anomaly.
    replayed = [(None, parse_agent_event(message)) for message in published]
    Agent.objects.filter(pk=agent.pk).update(status="Paused")
    assert apply_agent_events(replayed[:1]) == {"in_sync": 1}
    assert not AgentAnomaly.objects.filter(agent_id=agent.pk).exists()


def test_the_stream_holds_the_move_with_a_message_id_header(subscribe, operator):
    agent = Agent.objects.create(name="in-stream", status="Idle")
    subscribe("agent.command", Runtime("Idle"))
    paused = send_agent_command(operator, agent, "pause")
    assert paused.ok
    js = nats.connection().client().jetstream()
    stored = nats.connection().run(js.get_last_msg("AGENT_EVENTS", f"agent.{agent.pk}.events"))
    body = json.loads(stored.data)
    assert body["payload"]["StateChanged"]["new_state"] == "Paused"
    assert stored.headers["Nats-Msg-Id"] == body["message_id"]


def test_a_reply_the_console_cannot_follow_is_an_anomaly_naming_the_user(operator):
    """The agent moved on in the console (here: Stopping) by the time the runtime's Pause success
    is applied: nothing moves, no event is published, an anomaly says who asked."""
    agent = Agent.objects.create(name="moved-meanwhile", status="Stopping")
    events = Subscriber(f"agent.{agent.pk}.events")
    try:
        move = apply_reply_move(operator, agent.pk, "Pause", "Paused")
        nats.connection().run(nats.connection().client().flush())
    finally:
        events.close()
    assert not move.applied and "Recorded as an anomaly" in move.detail
    anomaly = AgentAnomaly.objects.get(agent_id=agent.pk)
    assert (anomaly.event_kind, anomaly.current_state, anomaly.attempted_state) == ("Pause reply", "Stopping", "Paused")
    assert "asked by operator" in anomaly.detail
    assert Agent.objects.get(pk=agent.pk).status == "Stopping"
    assert events.bodies() == []


def test_stop_moves_nothing_until_the_terminated_event(subscribe, operator):
    agent = Agent.objects.create(name="stopper", status="Running")
    subscribe("agent.command", Runtime("Running"))
    stopped = send_agent_command(operator, agent, "stop", graceful=False)
    assert stopped.ok and stopped.response.data == {"agent_id": str(agent.pk), "state": "stopped"}
    assert "stopped" in stopped.summary and "Terminated event" in stopped.summary
    assert Agent.objects.get(pk=agent.pk).status == "Running"
    terminated = parse_agent_event({"Terminated": {"agent_id": str(agent.pk), "reason": "forced_stop"}})
    assert apply_agent_events([(None, terminated)]) == {"state_changed": 1}
    assert Agent.objects.get(pk=agent.pk).status == "Terminated"


def test_health_check_and_status_replies_are_shown(subscribe, operator):
    agent = Agent.objects.create(name="checked", status="Running")
    runtime = Runtime("Running")
    subscribe("agent.command", runtime)
    healthy = send_agent_command(operator, agent, "health_check")
    assert healthy.ok and healthy.summary == "The agent is healthy."
    status = send_agent_command(operator, agent, "status")
    assert status.response.data == {
        "id": str(agent.pk),
        "state": "Running",
        "uptime": {"secs": 3725, "nanos": 5},
        "config": runtime_config(),
    }
    assert status.summary == "The runtime has the agent in Running, up 1 h 2 min."
    # Unhealthy while active: the runtime's health_check put it in Error, so the console does too.
    runtime.healthy, runtime.state = False, "Error"
    sick = send_agent_command(operator, agent, "HealthCheck")
    assert sick.ok and sick.summary.startswith("The agent is not healthy.")
    assert Agent.objects.get(pk=agent.pk).status == "Error" and sick.state == "Error"
    status = send_agent_command(operator, agent, "status")
    assert status.summary == "The runtime has the agent in Error, up 1 h 2 min."


def test_an_error_reply_shows_its_text_and_moves_nothing(subscribe, operator):
    agent = Agent.objects.create(name="refused", status="Running")
    subscribe("agent.command", Runtime(refuse="Pause failed: Failed to pause agent: process not found"))
    result = send_agent_command(operator, agent, "pause")
    assert not result.ok and result.response.message == "Pause failed: Failed to pause agent: process not found"
    assert result.summary == result.response.message == result.record.detail
    assert result.record.outcome == "error" and Agent.objects.get(pk=agent.pk).status == "Running"


def test_a_success_about_another_agent_is_unreadable(subscribe, operator):
    agent = Agent.objects.create(name="confused", status="Running")
    other = str(uuid.uuid4())
    subscribe("agent.command", lambda request: reply_to(request, success({"agent_id": other, "state": "paused"})))
    with pytest.raises(BadReply, match="wrong_agent"):
        send_agent_command(operator, agent, "pause")
    assert Agent.objects.get(pk=agent.pk).status == "Running"
    assert AgentCommandRecord.objects.get(agent_id=agent.pk).outcome == "error"
