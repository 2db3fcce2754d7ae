"""Agent commands through real NATS and PostgreSQL: the stand-in runtime answers, or a test responder
that answers badly or not at all. Every command handled is recorded; a refused move is never sent."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from agents import commands
from agents.commands import (
    BadReply,
    CommandRefused,
    CommandTimeout,
    RuntimeUnavailable,
    parse_command_response,
    send_agent_command,
)
from agents.events import parse_agent_event
from agents.models import Agent, AgentCommandRecord
from agents.projections import apply_agent_events
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import InvalidMessage
from tests.conftest import wait_until
from tests.live.payloads import runtime_bytes

pytestmark = pytest.mark.django_db(transaction=True)


class Subscriber:
    """A core NATS subscription on the console's connection: collects messages and may answer them."""

    def __init__(self, subject: str, answer: Callable[[dict], bytes | None] | None = None) -> None:
        self.connection = nats.connection()
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

        async def on_message(message) -> None:
            with self._lock:
                self.received.append((message.subject, message.data))
            if answer is not None and message.reply:
                reply = answer(json.loads(message.data))
                if reply is not None:
                    await message.respond(reply)

        client = self.connection.client()
        self.subscription = self.connection.run(client.subscribe(subject, cb=on_message))
        self.connection.run(client.flush())

    def bodies(self) -> list[Any]:
        with self._lock:
            return [json.loads(data) for _, data in self.received]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.run(self.subscription.unsubscribe())


def variants(bodies: list[dict]) -> list[tuple[str, dict]]:
    """(variant, fields) of agent events, enveloped or bare."""
    return [next(iter(body.get("payload", body).items())) for body in bodies]


def reply_to(request: dict, payload: dict, *, correlation: str | None = None) -> bytes:
    """The runtime's answer to ``request``: ``MessageEnvelope::new(payload).with_correlation(...)``,
    correlated to the request's message id unless ``correlation`` says otherwise."""
    return runtime_bytes(payload, correlation_id=correlation or request["message_id"])


def test_pause_and_resume_move_the_agent_and_are_recorded(stand_in, subscribe, operator):
    agent = Agent.objects.create(name="pausable", status="Running")
    events = subscribe(f"agent.{agent.pk}.events")
    sent = subscribe("agent.command")

    paused = send_agent_command(operator, agent, "pause")
    assert paused.ok and paused.response.variant == "Success"
    assert paused.response.data == {"agent_id": str(agent.pk), "state": "paused"}
    agent.refresh_from_db()
    assert agent.status == "Paused"
    record = paused.record
    assert (record.agent_id, record.command, record.outcome) == (agent.pk, "Pause", "ok")
    assert record.requested_by == operator and record.requested_by_name == "operator"
    assert record.arguments == {"agent_id": str(agent.pk)} and record.duration_ms is not None
    assert '"Success"' in record.response_excerpt
    # What went on the wire is the runtime's MessageEnvelope<AgentCommand>, correlated by the reply.
    (command,) = sent.bodies()
    assert command["message_id"] == str(record.message_id) and command["target_agent"] == str(agent.pk)
    assert set(command["timestamp"]) == {"secs_since_epoch", "nanos_since_epoch"}
    assert command["payload"] == {"Pause": {"agent_id": str(agent.pk)}}

    resumed = send_agent_command(operator, agent, "Resume")
    assert resumed.ok and resumed.response.data["state"] == "running"
    agent.refresh_from_db()
    assert agent.status == "Running"
    wait_until(lambda: len(events.bodies()) >= 2, what="the two StateChanged events")
    moves = [(f["old_state"], f["new_state"]) for v, f in variants(events.bodies()) if v == "StateChanged"]
    assert moves == [("Running", "Paused"), ("Paused", "Running")]
    assert list(AgentCommandRecord.objects.filter(agent_id=agent.pk).values_list("command", "outcome")) == [
        ("Resume", "ok"),
        ("Pause", "ok"),
    ]
    history = LogEntry.objects.filter(object_id=str(agent.pk)).values_list("change_message", flat=True)
    assert any(message.startswith("Pause command: ok") for message in history)


def test_graceful_and_forced_stops(stand_in, subscribe, operator):
    """The runtime publishes Terminated before its reply; the reply itself moves nothing (the
    Terminated event, through the projection, ends the agent)."""
    gentle = Agent.objects.create(name="gentle", status="Idle", timeout_seconds=600)
    forced = Agent.objects.create(name="forced", status="Paused")
    events = subscribe("agent.*.events")
    sent = subscribe("agent.command")

    stopped = send_agent_command(operator, gentle, "stop", timeout_s=7)
    assert stopped.ok and stopped.response.data["state"] == "stopped"
    assert stopped.record.arguments["graceful"] is True
    assert stopped.record.arguments["timeout"] == {"secs": 7, "nanos": 0}
    killed = send_agent_command(operator, forced, "stop", graceful=False)
    assert killed.ok
    assert killed.record.arguments == {"agent_id": str(forced.pk), "graceful": False, "timeout": None}
    assert Agent.objects.get(pk=gentle.pk).status == "Idle"  # not moved by the reply

    def terminated(agent: Agent) -> list[dict]:
        return [
            body
            for body in events.bodies()
            if "Terminated" in body.get("payload", body)
            and body.get("payload", body)["Terminated"]["agent_id"] == str(agent.pk)
        ]

    wait_until(lambda: terminated(gentle) and terminated(forced), what="the stops' Terminated events")
    assert terminated(gentle)[0]["payload"]["Terminated"]["reason"] == "graceful_stop"
    assert terminated(forced)[0]["payload"]["Terminated"]["reason"] == "forced_stop"
    outcome = apply_agent_events([(None, parse_agent_event(terminated(a)[0])) for a in (gentle, forced)])
    assert outcome == {"state_changed": 2}
    assert set(Agent.objects.filter(pk__in=[gentle.pk, forced.pk]).values_list("status", flat=True)) == {"Terminated"}
    # The default stop timeout is the agent's own, capped for a person waiting on a page.
    assert commands.default_stop_timeout(gentle) == commands.DEFAULT_STOP_TIMEOUT_CAP_SECONDS
    assert [b["payload"]["Stop"]["graceful"] for b in sent.bodies()] == [True, False]


def test_status_and_health_check_answer_in_any_state(stand_in, operator):
    running = Agent.objects.create(name="healthy", status="Running", model="claude-test")
    broken = Agent.objects.create(name="broken", status="Error")

    status = send_agent_command(operator, running, "status")
    assert status.ok and status.response.data["state"] == "Running"
    assert status.response.data["config"]["model"] == "claude-test"
    assert set(status.response.data["uptime"]) == {"secs", "nanos"}
    assert status.record.arguments["reply_to"].startswith("_INBOX.")

    health = send_agent_command(operator, running, "health_check")
    assert health.ok and health.response.data == {"agent_id": str(running.pk), "healthy": True}

    sick = send_agent_command(operator, broken, "HealthCheck")
    assert sick.ok and sick.response.data["healthy"] is False
    assert send_agent_command(operator, broken, "status").response.data["state"] == "Error"


@pytest.mark.parametrize(
    ("state", "command", "words"),
    [
        ("Paused", "pause", "Running or Idle"),
        ("Processing", "pause", "Running or Idle"),
        ("Running", "resume", "Paused"),
        ("Terminated", "stop", "Running, Paused, Idle, Processing or Error"),
        ("Starting", "stop", "can be stopped only"),
    ],
)
def test_an_illegal_move_is_refused_before_anything_is_sent(subscribe, operator, state, command, words):
    agent = Agent.objects.create(name=f"in-{state}", status=state)
    sent = subscribe("agent.command", answer=lambda request: reply_to(request, {"Success": {"message": "ok"}}))
    with pytest.raises(CommandRefused) as refused:
        send_agent_command(operator, agent, command)
    assert state in str(refused.value) and words in str(refused.value) and "Nothing was sent" in str(refused.value)
    record = refused.value.record
    assert (record.outcome, record.message_id, record.duration_ms) == ("refused", None, None)
    assert record.detail == str(refused.value)
    # A later command does reach the subscriber: so the refused one was never published.
    assert send_agent_command(operator, agent, "status").ok
    wait_until(lambda: len(sent.bodies()) >= 1, what="the status command")
    assert [next(iter(body["payload"])) for body in sent.bodies()] == ["Status"]


def test_without_the_permission_nothing_is_sent_or_recorded(subscribe, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="agents", codename="view_agent"))
    agent = Agent.objects.create(name="guarded", status="Running")
    sent = subscribe("agent.command")
    with pytest.raises(PermissionDenied):
        send_agent_command(django_user_model.objects.get(pk=viewer.pk), agent, "pause")
    assert not AgentCommandRecord.objects.exists()
    nats.connection().run(nats.connection().client().flush())
    assert sent.bodies() == []


def test_bad_input_is_a_value_error_and_not_recorded(operator):
    agent = Agent.objects.create(name="any", status="Running")
    with pytest.raises(ValueError, match="Unknown command"):
        send_agent_command(operator, agent, "explode")
    with pytest.raises(ValueError, match="from 1 to 120"):
        send_agent_command(operator, agent, "stop", timeout_s=0)
    with pytest.raises(ValueError, match="from 1 to 120"):
        send_agent_command(operator, agent, "stop", timeout_s="soon")
    assert not AgentCommandRecord.objects.exists()


def test_no_answer_in_time_is_a_timeout(subscribe, operator):
    agent = Agent.objects.create(name="silent", status="Running")
    sent = subscribe("agent.command")  # listens, never answers
    with pytest.raises(CommandTimeout, match=r"No answer from the runtime within 0\.3 s") as timed_out:
        send_agent_command(operator, agent, "pause", reply_timeout=0.3)
    assert timed_out.value.record.outcome == "timeout"
    assert len(sent.bodies()) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda request: b"\xff not json", "not_json"),
        (lambda request: reply_to(request, {"Teleported": {}}), "unknown_variant"),
        (
            lambda request: reply_to(request, {"Success": {"message": "ok"}}, correlation=str(uuid.uuid4())),
            "wrong_corr",
        ),
        (lambda request: reply_to(request, {"HealthCheck": {"agent_id": "x", "healthy": "yes"}}), "bad_field"),
    ],
)
def test_an_unreadable_answer_is_a_clear_error(subscribe, operator, answer, reason):
    agent = Agent.objects.create(name="garbled", status="Running")
    subscribe("agent.command", answer=answer)
    with pytest.raises(BadReply, match="could not be read") as bad:
        send_agent_command(operator, agent, "status")
    assert reason in str(bad.value)
    assert bad.value.record.outcome == "error" and bad.value.record.response_excerpt


def test_a_runtime_refusal_is_an_answer_not_an_exception(subscribe, operator):
    agent = Agent.objects.create(name="refuser", status="Running")
    subscribe("agent.command", answer=lambda r: reply_to(r, {"Error": {"error": "Pause failed: busy", "code": 409}}))
    result = send_agent_command(operator, agent, "pause")
    assert not result.ok and result.response.message == "Pause failed: busy" and result.response.code == 409
    assert result.record.outcome == "error"
    agent.refresh_from_db()
    assert agent.status == "Running"  # the console never moves the agent itself: the runtime's events do


def test_no_runtime_listening_is_unavailable(operator):
    agent = Agent.objects.create(name="alone", status="Running")
    with pytest.raises(RuntimeUnavailable, match="No runtime is listening") as unavailable:
        send_agent_command(operator, agent, "pause", reply_timeout=3)
    assert unavailable.value.record.outcome == "unavailable"


def test_nats_down_is_unavailable(operator, monkeypatch):
    agent = Agent.objects.create(name="cut-off", status="Running")
    away = nats.SyncNats("nats://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(nats, "_connection", away)
    try:
        with pytest.raises(RuntimeUnavailable, match="NATS is unavailable") as unavailable:
            send_agent_command(operator, agent, "status")
    finally:
        away.close()
    assert unavailable.value.record.outcome == "unavailable"


def test_response_parser_reads_every_runtime_variant():
    ok = parse_command_response(b'{"Success": {"message": "done", "data": {"state": "paused"}}}')
    assert (ok.variant, ok.success, ok.message, ok.data) == ("Success", True, "done", {"state": "paused"})
    failed = parse_command_response(b'{"Error": {"error": "nope", "code": null}}')
    assert (failed.success, failed.message, failed.code) == (False, "nope", None)
    status = parse_command_response(b'{"Status": {"agent_id": "a", "state": "Idle", "healthy": true}}')
    assert status.success and status.message == "The agent is Idle."
    health = parse_command_response(b'{"HealthCheck": {"agent_id": "a", "healthy": false, "details": "no beat"}}')
    assert health.message == "The agent is not healthy. no beat"
    wrapped = json.dumps(
        {"message_id": "m", "timestamp": "2026-01-01T00:00:00Z", "correlation_id": "c", "payload": {"Success": {}}}
    ).encode()
    assert parse_command_response(wrapped, message_id="c").message == "Done."
    for bad in [b"[]", b'{"Success": 1}', b'{"Error": {"error": 5}}', b'{"Error": {"code": "x"}}', b'{"Status": {}}']:
        with pytest.raises(InvalidMessage):
            parse_command_response(bad)


def test_records_are_shown_read_only_in_the_admin(admin_client, operator):
    agent = Agent.objects.create(name="in-admin", status="Paused")
    with pytest.raises(CommandRefused):
        send_agent_command(operator, agent, "pause")
    record = AgentCommandRecord.objects.get()
    changelist = admin_client.get("/admin/agents/agentcommandrecord/")
    assert changelist.status_code == 200 and "in-admin" in changelist.content.decode()
    page = admin_client.get(f"/admin/agents/agentcommandrecord/{record.pk}/change/")
    assert page.status_code == 200 and "can be paused only" in page.content.decode()
    assert 'name="outcome"' not in page.content.decode()  # shown, not editable
    assert admin_client.get("/admin/agents/agentcommandrecord/add/").status_code == 403
