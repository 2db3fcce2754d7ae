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
from mistersmith.messages import InvalidMessage, decode_json, envelope

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
            (2, event("StateChanged", agent_id, old_state="Created", new_state="Starting")),
            (3, event("StateChanged", agent_id, old_state="Starting", new_state="Running")),
            (4, event("StateChanged", agent_id, old_state="Running", new_state="Created")),  # illegal
            (5, event("Error", agent_id, error="health check failed")),
            (6, event("StateChanged", agent_id, old_state="Running", new_state="Error")),  # row already there
        ]
    )
    assert outcome == {"spawned": 1, "state_changed": 3, "anomaly": 1, "in_sync": 1}
    agent = Agent.objects.get(pk=agent_id)
    assert (agent.name, agent.model, agent.timeout_seconds, agent.status) == ("alpha", "claude-x", 300, "Error")
    (anomaly,) = AgentAnomaly.objects.filter(agent_id=agent_id)
    assert (anomaly.current_state, anomaly.attempted_state, anomaly.stream_sequence) == ("Running", "Created", 4)


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
