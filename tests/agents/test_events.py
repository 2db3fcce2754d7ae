"""Agent events: every contract form parses; the projection obeys the lifecycle."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.events import parse_agent_event, subject_agent_id
from agents.models import Agent, AgentAnomaly
from agents.projections import apply_agent_events
from mistersmith.jetstream.messages import InvalidMessage, decode_json, envelope
from tests.live.payloads import runtime_bytes, runtime_envelope, spawned_event

AGENT = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ({"Spawned": {"agent_id": AGENT, "config": {"model": "m"}}}, "Spawned"),
        ({"StateChanged": {"agent_id": AGENT, "old_state": "Running", "new_state": "Idle"}}, "StateChanged"),
        ({"Terminated": {"agent_id": AGENT, "reason": "graceful_stop"}}, "Terminated"),
        ({"Error": {"agent_id": AGENT, "error": "boom"}}, "Error"),
        ({"Output": {"agent_id": AGENT, "content": "hello"}}, "Output"),
        ({"Heartbeat": {"agent_id": AGENT, "timestamp": {"secs_since_epoch": 1, "nanos_since_epoch": 0}}}, "Heartbeat"),
    ],
)
def test_every_variant_parses_bare_and_enveloped(message, kind):
    for form in (message, envelope(message, message_id="m")):
        event = parse_agent_event(form, subject_agent=AGENT)
        assert (event.kind, str(event.agent_id)) == (kind, AGENT)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"Teleported": {"agent_id": AGENT}}, "unknown_variant"),
        ({"StateChanged": {"agent_id": AGENT, "old_state": "Running", "new_state": "Asleep"}}, "bad_state"),
        ({"Terminated": {"agent_id": AGENT, "reason": "boredom"}}, "bad_field"),
        ({"Error": {"agent_id": "nope", "error": "x"}}, "bad_field"),
        ({"Output": {"agent_id": str(uuid.uuid4()), "content": "x"}}, "subject_mismatch"),
    ],
)
def test_bad_events_are_refused_with_a_reason(message, reason):
    with pytest.raises(InvalidMessage) as error:
        parse_agent_event(message, subject_agent=AGENT)
    assert error.value.reason == reason


def test_subject_agent_id():
    assert subject_agent_id(f"agent.{AGENT}.events") == AGENT
    assert subject_agent_id("agent.command") is None


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_invalid_message(data):
    with contextlib.suppress(InvalidMessage):
        parse_agent_event(decode_json(data))


@given(
    st.dictionaries(
        st.sampled_from(["agent_id", "old_state", "new_state", "reason", "error", "content", "timestamp", "config"]),
        st.none() | st.text(max_size=10) | st.integers() | st.lists(st.integers(), max_size=2),
    )
)
def test_random_bodies_only_raise_invalid_message(body):
    for kind in ("Spawned", "StateChanged", "Terminated", "Error", "Output", "Heartbeat"):
        with contextlib.suppress(InvalidMessage):
            parse_agent_event(json.loads(json.dumps({kind: body})))


def event(kind: str, agent: uuid.UUID, **body):
    return parse_agent_event({kind: {"agent_id": str(agent), **body}})


@pytest.mark.django_db
def test_projection_follows_the_lifecycle_and_records_anomalies():
    agent_id = uuid.uuid4()
    outcome = apply_agent_events(
        [
            (1, event("Spawned", agent_id, config={"model": "claude-x", "timeout_seconds": "bad", "name": "alpha"})),
            (2, event("StateChanged", agent_id, old_state="Running", new_state="Processing")),
            (3, event("StateChanged", agent_id, old_state="Processing", new_state="Idle")),
            (4, event("StateChanged", agent_id, old_state="Idle", new_state="Created")),  # illegal
            (5, event("Error", agent_id, error="health check failed")),
            (6, event("StateChanged", agent_id, old_state="Idle", new_state="Error")),  # row already there
        ]
    )
    assert outcome == {"spawned": 1, "state_changed": 3, "anomaly": 1, "in_sync": 1}
    agent = Agent.objects.get(pk=agent_id)
    assert (agent.name, agent.model, agent.timeout_seconds, agent.status) == ("alpha", "claude-x", 300, "Error")
    (anomaly,) = AgentAnomaly.objects.filter(agent_id=agent_id)
    assert (anomaly.current_state, anomaly.attempted_state, anomaly.stream_sequence) == ("Idle", "Created", 4)


@pytest.mark.django_db
def test_spawned_makes_a_new_agent_running_with_explicit_nulls_kept():
    agent_id = uuid.uuid4()
    spawned = parse_agent_event(decode_json(runtime_bytes(spawned_event(agent_id, memory_limit_mb=None))))
    assert spawned.new_state == "Running"
    assert apply_agent_events([(1, spawned)]) == {"spawned": 1}
    agent = Agent.objects.get(pk=agent_id)
    assert agent.status == "Running"
    assert (agent.memory_limit_mb, agent.max_turns, agent.allowed_tools) == (None, None, None)
    # a missing key keeps the runtime's default (AgentConfig::default: 512 MB)
    other = uuid.uuid4()
    apply_agent_events([(2, event("Spawned", other, config={"model": "m", "max_turns": 7}))])
    assert Agent.objects.values_list("memory_limit_mb", "max_turns").get(pk=other) == (512, 7)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("before", "after", "result"),
    [
        ("Created", "Running", "state_changed"),
        ("Starting", "Running", "state_changed"),
        ("Running", "Running", "in_sync"),
        ("Paused", "Paused", "already_spawned"),  # an old Spawned read again: the pause stays
        ("Processing", "Processing", "already_spawned"),
        ("Terminated", "Terminated", "anomaly"),  # the runtime never spawns an id twice
        ("Error", "Error", "anomaly"),
    ],
)
def test_spawned_for_a_known_agent(before, after, result):
    agent = Agent.objects.create(name="known", status=before, memory_limit_mb=512)
    spawned = parse_agent_event(runtime_envelope(spawned_event(agent.pk, memory_limit_mb=None)))
    assert apply_agent_events([(3, spawned)]) == {result: 1}
    agent.refresh_from_db()
    assert agent.status == after
    if before in ("Created", "Starting"):
        assert agent.memory_limit_mb is None  # the spawn's config is the runtime's truth
    if result == "anomaly":
        assert "never spawns an agent id twice" in AgentAnomaly.objects.get(agent_id=agent.pk).detail


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("before", "message", "after"),
    [
        ("Stopping", {"Error": {"error": "Failed to stop agent: no such process"}}, "Error"),  # a failed stop
        ("Paused", {"Error": {"error": "Failed to kill agent"}}, "Error"),  # a failed kill
        ("Created", {"Error": {"error": "Failed to kill agent"}}, "Error"),
        ("Idle", {"Error": {"error": "Agent process unhealthy"}}, "Error"),  # a failed health check
        ("Paused", {"Terminated": {"reason": "forced_stop"}}, "Terminated"),  # kill
        ("Stopping", {"StateChanged": {"old_state": "Stopping", "new_state": "Error"}}, "Error"),
    ],
)
def test_every_move_the_runtime_makes_is_applied(before, message, after):
    agent = Agent.objects.create(name="moves", status=before)
    ((kind, body),) = message.items()
    assert apply_agent_events([(4, event(kind, agent.pk, **body))]) == {"state_changed": 1}
    assert Agent.objects.get(pk=agent.pk).status == after
    assert not AgentAnomaly.objects.filter(agent_id=agent.pk).exists()


@pytest.mark.django_db
def test_heartbeats_only_move_forward_and_unknown_agents_are_anomalies():
    agent = Agent.objects.create(name="hb")
    later = datetime(2026, 11, 26, 12, tzinfo=UTC)
    beat = {"secs_since_epoch": int(later.timestamp()), "nanos_since_epoch": 0}
    earlier = {"secs_since_epoch": int((later - timedelta(minutes=1)).timestamp()), "nanos_since_epoch": 0}
    apply_agent_events(
        [(None, event("Heartbeat", agent.pk, timestamp=beat)), (None, event("Heartbeat", agent.pk, timestamp=earlier))]
    )
    agent.refresh_from_db()
    assert agent.last_heartbeat == later
    stranger = uuid.uuid4()
    assert apply_agent_events([(9, event("Terminated", stranger, reason="forced_stop"))]) == {"anomaly": 1}
    assert AgentAnomaly.objects.get(agent_id=stranger).detail == "event for an agent the console does not know"
