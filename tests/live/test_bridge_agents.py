"""The agents feed of the bridge: every event applied exactly once, bad ones dead-lettered."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter

import pytest
from django.db import connections

from agents.feeds import apply_agent_batch
from agents.models import Agent, AgentAnomaly
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import envelope
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.models import BridgePosition, DeadLetter
from mistersmith.live.registry import BridgeStats
from tests.conftest import delete_bridge_consumers, wait_until
from tests.live.payloads import runtime_bytes, spawned_event

pytestmark = pytest.mark.django_db(transaction=True)

# A legal cycle through the lifecycle from Running, repeated: each step is one StateChanged event.
CYCLE = ["Processing", "Idle", "Paused", "Running"]


def state_changes(agent_id: uuid.UUID, steps: int) -> list[dict]:
    states = ["Created", "Starting", "Running", *(CYCLE * (steps // len(CYCLE) + 1))][: steps + 1]
    return [
        {"StateChanged": {"agent_id": str(agent_id), "old_state": old, "new_state": new}}
        for old, new in itertools.pairwise(states)
    ]


def publish_all(subject: str, payloads: list) -> None:
    client = nats.connection()
    for index, payload in enumerate(payloads):
        data = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(envelope(payload, message_id=uuid.uuid4().hex) if index % 2 else payload).encode()
        )
        client.publish(subject, data, msg_id=uuid.uuid4().hex)


def start_bridge(prefix: str, url: str) -> BridgeThread:
    thread = BridgeThread(consumer_prefix=prefix, url=url)
    thread.start()
    assert thread.ready.wait(20)
    return thread


def test_events_reach_the_projection_exactly_once_across_a_bridge_restart(nats_url):
    agent = Agent.objects.create(name="walker")
    prefix = f"test-agents-{uuid.uuid4().hex[:10]}"
    events = state_changes(agent.pk, 200)
    subject = f"agent.{agent.pk}.events"
    bridge = start_bridge(prefix, nats_url)
    try:
        publish_all(subject, events[:100])
        wait_until(lambda: bridge.stats.processed["state_changed"] >= 100)
        bridge.stop()
        publish_all(subject, events[100:])  # while no bridge runs: waits in the durable consumer
        bridge = start_bridge(prefix, nats_url)
        wait_until(lambda: bridge.stats.processed["state_changed"] >= 100)
    finally:
        bridge.stop()
        connections.close_all()
        delete_bridge_consumers(prefix)
    agent.refresh_from_db()
    assert agent.status == events[-1]["StateChanged"]["new_state"]
    assert not AgentAnomaly.objects.filter(agent_id=agent.pk).exists()  # nothing applied twice or skipped


def test_bad_events_are_dead_lettered_and_the_bridge_goes_on(nats_url):
    agent = Agent.objects.create(name="target", status="Running")
    prefix = f"test-agents-{uuid.uuid4().hex[:10]}"
    subject = f"agent.{agent.pk}.events"
    bridge = start_bridge(prefix, nats_url)
    try:
        publish_all(
            subject,
            [
                b"\xff not json",
                {"Teleported": {"agent_id": str(agent.pk)}},
                {"StateChanged": {"agent_id": str(uuid.uuid4()), "old_state": "Running", "new_state": "Idle"}},
                {"StateChanged": {"agent_id": str(agent.pk), "old_state": "Running", "new_state": "Paused"}},
            ],
        )
        wait_until(lambda: bridge.stats.processed["state_changed"] >= 1)
    finally:
        bridge.stop()
        connections.close_all()
        delete_bridge_consumers(prefix)
    reasons = Counter(DeadLetter.objects.filter(subject=subject).values_list("reason", flat=True))
    assert reasons == {"not_json": 1, "unknown_variant": 1, "subject_mismatch": 1}
    agent.refresh_from_db()
    assert agent.status == "Paused"


def test_a_replayed_batch_changes_nothing():
    agent = Agent.objects.create(name="replayed")
    batch = [
        (seq, f"agent.{agent.pk}.events", json.dumps(payload).encode())
        for seq, payload in enumerate(state_changes(agent.pk, 3), start=1)
    ]
    consumer = f"test-replay-{uuid.uuid4().hex[:8]}"
    first, second, third = BridgeStats(), BridgeStats(), BridgeStats()
    apply_agent_batch(batch, first, consumer)
    # redelivered after a crash before the ack, its frames not known to be sent: framed again, not applied
    reframed = FrameBuffer()
    apply_agent_batch(batch, second, consumer, reframed)
    assert first.processed["state_changed"] == 3
    assert second.processed == {"replay_skipped": 3, "reframed": 3}
    assert [event["result"] for event in reframed.take()[0]["events"]] == ["state_changed"] * 3
    # redelivered after its frames went out (the next batch's commit says so): nothing at all
    apply_agent_batch(batch, third, consumer, FrameBuffer(sent_through=3))
    assert third.processed == {"replay_skipped": 3}
    assert BridgePosition.objects.get(consumer=consumer).sequence == 3
    agent.refresh_from_db()
    assert agent.status == "Processing"


def test_the_runtimes_own_messages_through_the_bridge(nats_url):
    """What the runtime publishes, byte for byte and without Nats-Msg-Id: Spawned makes the agent
    Running (memory_limit_mb null stays NULL), a 600,000-character Output is stored whole, a failed
    stop (Stopping -> Error) is applied, and "Startup"/"Shutdown" on system.control are counted, not
    dead-lettered."""
    from agents.models import InteractiveSession, SessionMessage

    agent_id = uuid.uuid4()
    prefix = f"test-runtime-{uuid.uuid4().hex[:10]}"
    bridge = start_bridge(prefix, nats_url)
    client = nats.connection()
    subject = f"agent.{agent_id}.events"
    try:
        client.publish(subject, runtime_bytes(spawned_event(agent_id, memory_limit_mb=None)))
        wait_until(lambda: Agent.objects.filter(pk=agent_id).exists(), what="the spawned agent")
        agent = Agent.objects.get(pk=agent_id)
        assert (agent.status, agent.memory_limit_mb, agent.max_turns, agent.allowed_tools) == (
            "Running",
            None,
            None,
            None,
        )

        session = InteractiveSession.objects.create(agent=agent, state="Ready")
        reply = "whole reply " * 50_000  # 600,000 characters, under AGENT_EVENTS' 1 MiB
        client.publish(subject, runtime_bytes({"Output": {"agent_id": str(agent_id), "content": reply}}))
        wait_until(lambda: SessionMessage.objects.filter(session=session).exists(), what="the output")
        assert SessionMessage.objects.get(session=session).content == reply

        Agent.objects.filter(pk=agent_id).update(status="Stopping")
        failed = {"Error": {"agent_id": str(agent_id), "error": "Failed to stop agent: process did not exit"}}
        client.publish(subject, runtime_bytes(failed))
        wait_until(lambda: Agent.objects.get(pk=agent_id).status == "Error", what="Stopping -> Error")
        assert not AgentAnomaly.objects.filter(agent_id=agent_id).exists()

        before = DeadLetter.objects.filter(stream="SYSTEM_EVENTS").count()
        client.publish("system.control", json.dumps("Startup").encode())  # bare
        client.publish("system.control", runtime_bytes("Shutdown"))  # in the envelope
        wait_until(
            lambda: bridge.stats.processed["ignored:Startup"] >= 1 and bridge.stats.processed["ignored:Shutdown"] >= 1,
            what="the unit variants counted",
        )
        assert DeadLetter.objects.filter(stream="SYSTEM_EVENTS").count() == before
    finally:
        bridge.stop()
        delete_bridge_consumers(prefix)
        connections.close_all()
