"""Property tests of the bridge's apply functions on the real database (issue 6, "Bad input").

Any batch of messages, valid and hostile mixed, on the subjects a feed reads: the apply function
returns (nothing escapes, no batch is lost to a database error), every message is accounted for
as processed or rejected, and every rejection is a dead letter. The hostile messages aim at the
columns: NUL characters, lone surrogates, out-of-range numbers and dates, over-long texts.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.feeds import apply_agent_batch, apply_discovery_batch
from agents.models import Agent, Discovery, InteractiveSession, SessionMessage
from mistersmith.jetstream.messages import clean_text
from mistersmith.live.frames import FrameBuffer, socket_text
from mistersmith.live.models import DeadLetter
from mistersmith.live.registry import BridgeStats
from supervision.feeds import apply_control, apply_supervision_batch
from supervision.models import SupervisionNode, SupervisionRestart
from tests.live import payloads
from tests.live.test_message_properties import storable, strict_json

pytestmark = pytest.mark.django_db(transaction=True)

# Each example writes to the database: fewer examples than the pure tests, each a whole batch.
DATABASE_EXAMPLES = settings(max_examples=100)

# Stream sequences are unique across examples (the discovery store keeps each sequence once).
SEQUENCES = itertools.count(1)

small_hostile_bytes = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(payloads.hostile_bytes_examples(4096)),
    payloads.json_values.map(payloads.dumps),
)


def json_bytes(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Messages of a (message, facts) strategy as the bytes a publisher sends."""
    return strategy.map(lambda example: payloads.dumps(example[0]))


def mutated_bytes(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return payloads.mutated(strategy).map(payloads.dumps)


def apply_and_account(
    apply, stream: str, items: list[tuple[str, bytes]], consumer: str
) -> tuple[BridgeStats, list[int]]:
    """Apply one batch as the bridge does; check every message is processed or rejected once,
    each rejection a dead letter, and the batch's frames strict JSON."""
    batch = [(next(SEQUENCES), subject, data) for subject, data in items]
    stats, frames = BridgeStats(), FrameBuffer()
    dead_before = DeadLetter.objects.filter(stream=stream).count()
    apply(batch, stats, consumer, frames)
    processed = sum(stats.processed.values()) - stats.processed["output_without_session"]  # a second count
    rejected = sum(stats.rejected.values())
    assert processed + rejected == len(batch), (stats.processed, stats.rejected)
    assert DeadLetter.objects.filter(stream=stream).count() - dead_before == rejected
    assert set(stats.rejected) <= payloads.KNOWN_REASONS
    for frame in frames.take():
        strict_json(socket_text(frame))
    return stats, [sequence for sequence, _, _ in batch]


def agent_subjects(agent: str) -> st.SearchStrategy:
    return st.sampled_from([f"agent.{agent}.events"] * 4 + [f"agent.{agent}.status", f"agent.{agent}.output"])


@st.composite
def agent_batches(draw, agent: str) -> list[tuple[str, bytes]]:
    """Events for a known agent (it has an open session, so Output is written), for new agents
    (Spawned creates them), for an agent the subject does not name, and hostile bytes."""
    newcomer = str(draw(st.uuids()))
    message = st.one_of(
        json_bytes(payloads.valid_agent_events(agent)),
        json_bytes(payloads.valid_agent_events(newcomer)),
        mutated_bytes(payloads.valid_agent_events(agent)),
        small_hostile_bytes,
        st.builds(
            lambda config: payloads.dumps({"Spawned": {"agent_id": newcomer, "config": config}}),
            payloads.hostile_configs,
        ),
    )
    subject = agent_subjects(agent) | agent_subjects(newcomer)
    return draw(st.lists(st.tuples(subject, message), min_size=1, max_size=12))


@DATABASE_EXAMPLES
@given(st.data())
def test_any_agent_batch_is_applied_and_accounted(data):
    agent = Agent.objects.create(name="fuzzed", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    items = data.draw(agent_batches(str(agent.pk)))
    apply_and_account(apply_agent_batch, "AGENT_EVENTS", items, f"prop-{uuid.uuid4().hex[:12]}")
    for content in SessionMessage.objects.filter(session=session).values_list("content", flat=True):
        assert storable(content)


@st.composite
def discovery_batches(draw) -> list[tuple[str, bytes]]:
    message = st.one_of(
        json_bytes(payloads.valid_discoveries()),
        mutated_bytes(payloads.valid_discoveries()),
        small_hostile_bytes,
        st.builds(
            lambda text, mid: payloads.dumps(
                {
                    "message_id": mid,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "payload": {
                        "agent_id": text or "a",
                        "agent_role": text or "r",
                        "discovery_type": "insight",
                        "content": text or "c",
                        "confidence": 0.5,
                        "timestamp": "2026-01-01T00:00:00+14:00",
                        "related_to": text,
                    },
                }
            ),
            payloads.nasty_text,
            st.text(min_size=150, max_size=400),  # longer than the message_id column
        ),
    )
    subject = st.sampled_from(["discoveries.a1.insights", "discoveries.questions", "discoveries.x.y.z"])
    return draw(st.lists(st.tuples(subject, message), min_size=1, max_size=12))


@DATABASE_EXAMPLES
@given(discovery_batches())
def test_any_discovery_batch_is_applied_and_accounted(items):
    stats, sequences = apply_and_account(apply_discovery_batch, "DISCOVERIES", items, "prop-discoveries")
    stored = Discovery.objects.filter(stream_sequence__in=sequences)  # the newest: none evicted yet
    assert stored.count() == stats.processed["discovery"]
    for row in stored:
        assert storable(row.content) and storable(row.agent_id) and storable(row.agent_role)


@st.composite
def control_batches(draw, restart_id: str) -> list[tuple[str, bytes]]:
    """Answers to a pending restart (hostile error messages included), the console's own requests,
    health reports, and anything else."""
    answer = st.builds(
        lambda success, text, instance: payloads.dumps(
            {
                "RestartCompleted": {
                    "restart_id": restart_id,
                    "success": success,
                    "error_message": text,
                    "new_instance_id": instance,
                }
            }
        ),
        st.booleans(),
        payloads.nasty_text | st.text(min_size=6000, max_size=6000),
        st.none() | st.uuids().map(str),
    )
    message = st.one_of(
        answer,
        json_bytes(payloads.valid_restart_answers(restart_id)),
        mutated_bytes(payloads.valid_restart_answers(restart_id)),
        payloads.json_values.map(lambda body: payloads.dumps({"RestartNode": body})),
        payloads.json_values.map(lambda body: payloads.dumps({"SystemHealth": body})),
        small_hostile_bytes,
    )
    subject = st.sampled_from(["system.control"] * 4 + ["system.health", "pool.management"])
    return draw(st.lists(st.tuples(subject, message), min_size=1, max_size=12))


@DATABASE_EXAMPLES
@given(st.data())
def test_any_control_batch_is_applied_and_accounted(data):
    node = SupervisionNode.objects.create(node_id=f"prop-{uuid.uuid4().hex[:10]}", node_type="RootSupervisor")
    restart = SupervisionRestart.objects.create(
        node=node, restart_attempt_number=1, restart_delay_ms=0, command_sequence=1
    )
    items = data.draw(control_batches(str(restart.pk)))
    stats, _ = apply_and_account(apply_control, "SYSTEM_EVENTS", items, "prop-control")
    restart.refresh_from_db()
    assert stats.processed["restart_completed"] == (1 if restart.completed_at else 0)
    if restart.error_message:
        assert storable(restart.error_message) and len(restart.error_message) <= 5000


@st.composite
def supervision_batches(draw) -> list[tuple[str, bytes]]:
    agent, node = draw(st.uuids()), draw(st.uuids())
    subject = st.sampled_from(
        [
            f"supervision.agent.{agent}.lifecycle.created",
            f"supervision.agent.{agent}.health.heartbeat",
            f"supervision.node.{node}.policy_saved",
            "supervision.error.critical.bridge",
            "supervision.x",
        ]
    )
    message = small_hostile_bytes | payloads.mutated(payloads.valid_agent_events()).map(payloads.dumps)
    return draw(st.lists(st.tuples(subject, message), min_size=1, max_size=12))


@DATABASE_EXAMPLES
@given(supervision_batches())
def test_any_supervision_batch_is_applied_and_accounted(items):
    apply_and_account(apply_supervision_batch, "SUPERVISION_EVENTS", items, "prop-supervision")


def test_a_message_that_is_only_nul_bytes_is_dead_lettered():
    """PostgreSQL refuses NUL in text: the dead letter keeps the excerpt with U+FFFD instead."""
    stats, _ = apply_and_account(
        apply_supervision_batch, "SUPERVISION_EVENTS", [("supervision.x", b"\x00\x00")], "prop-supervision"
    )
    assert stats.rejected == Counter({"not_json": 1})
    assert DeadLetter.objects.filter(stream="SUPERVISION_EVENTS").latest("id").payload_excerpt == "\ufffd\ufffd"


def test_hostile_values_in_every_stored_column_are_stored_safely():
    """The fixed worst cases, one per column a message reaches, in one batch each."""
    agent = Agent.objects.create(name="columns", status="Running")
    InteractiveSession.objects.create(agent=agent, state="Ready")
    newcomer = str(uuid.uuid4())
    hostile = "\x00<script>window.__pwned=1</script>\ud800"
    agent_items = [
        (
            f"agent.{newcomer}.events",
            payloads.dumps(
                {
                    "Spawned": {
                        "agent_id": newcomer,
                        "config": {
                            "name": hostile,
                            "model": "m\x00",
                            "max_turns": 2**40,
                            "timeout_seconds": -5,
                            "memory_limit_mb": 2**31,
                            "allowed_tools": ["a\x00", "\ud800"],
                            "enable_mcp": 1,
                        },
                    }
                }
            ),
        ),
        (f"agent.{agent.pk}.events", payloads.dumps({"Output": {"agent_id": str(agent.pk), "content": hostile}})),
        (
            f"agent.{agent.pk}.events",
            payloads.dumps({"Heartbeat": {"agent_id": str(agent.pk), "timestamp": "0001-01-01T00:00:00+01:00"}}),
        ),
        (
            f"agent.{agent.pk}.events",
            payloads.dumps({"Heartbeat": {"agent_id": str(agent.pk), "timestamp": "0001-01-01T00:30:00-01:00"}}),
        ),
    ]
    stats, _ = apply_and_account(apply_agent_batch, "AGENT_EVENTS", agent_items, f"prop-{uuid.uuid4().hex[:12]}")
    assert stats.rejected == Counter({"bad_timestamp": 1})
    spawned = Agent.objects.get(pk=newcomer)
    assert (spawned.name, spawned.model, spawned.max_turns, spawned.timeout_seconds) == (
        clean_text(hostile),
        "m\ufffd",
        None,
        300,
    )
    assert spawned.allowed_tools == ["a\ufffd", "\ufffd"]
    assert SessionMessage.objects.get(session__agent=agent).content == clean_text(hostile)
    agent.refresh_from_db()
    assert agent.last_heartbeat == datetime(1, 1, 1, 1, 30, tzinfo=UTC)

    discovery = {
        "agent_id": hostile,
        "agent_role": hostile,
        "discovery_type": "Insight",
        "content": hostile,
        "confidence": 1,
        "timestamp": "2026-01-01T00:00:00Z",
        "related_to": hostile,
    }
    wrapped = {"message_id": "m" * 1000, "timestamp": "2026-01-01T00:00:00Z", "payload": discovery}
    items = [("discoveries.a.insights", json.dumps(wrapped).encode())]
    apply_and_account(apply_discovery_batch, "DISCOVERIES", items, "prop-discoveries")
    stored = Discovery.objects.latest("id")
    assert (stored.content, len(stored.message_id)) == (clean_text(hostile), 200)
