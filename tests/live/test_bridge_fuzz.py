"""A fuzz run through the real stack (issue 6, "Bad input"): thousands of random and hostile
payloads on every subject the bridge reads, then one valid sentinel per feed.

The bridge must keep running (its thread alive, never restarted by an error), never get stuck
(each feed applies its sentinel, published after all the junk, within the deadline), and account
for every message (processed + rejected at least what was published: the streams are shared, so
others' messages may be counted too, never fewer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter

import pytest
from django.db import connections

from agents.models import Agent, Discovery
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import envelope
from mistersmith.jetstream.streams import STREAMS
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import DeadLetter
from supervision.models import SupervisionNode, SupervisionRestart
from tests.conftest import delete_bridge_consumers, wait_until
from tests.live.payloads import hostile_bytes_examples, hostile_value, random_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MESSAGES = 3000
SEED = 20261126
HEADROOM = 512  # the stream's max message size counts the headers (Nats-Msg-Id) too
IN_FLIGHT = 64


def subjects_by_stream(run: str, agent: str) -> dict[str, list[str]]:
    """Every subject the bridge reads, with this run's own agent ids and subject tokens."""
    return {
        "SYSTEM_EVENTS": ["system.control", "system.control", "system.health", "pool.management"],
        "AGENT_EVENTS": [f"agent.{agent}.events"] * 3 + [f"agent.{agent}.status", f"agent.{agent}.output"],
        "DISCOVERIES": [f"discoveries.{run}.insights", f"discoveries.{run}.questions", "discoveries.questions"],
        "SUPERVISION_EVENTS": [
            f"supervision.agent.{agent}.lifecycle.created",
            f"supervision.agent.{agent}.health.heartbeat",
            f"supervision.node.{run}.policy_saved",
            f"supervision.error.critical.{run}",
        ],
    }


def junk(rng: random.Random, stream: str, agent: str) -> bytes:
    """One random or hostile payload no larger than the stream takes."""
    largest = STREAMS[stream].max_msg_size - HEADROOM
    roll = rng.random()
    if roll < 0.35:
        return random_bytes(rng, largest)
    if roll < 0.95:
        data = json.dumps(hostile_value(rng, agent)).encode()
        return data if len(data) <= largest else data[:largest]
    fixed = hostile_bytes_examples(largest)
    return rng.choice(fixed)


def publish_all(messages: list[tuple[str, bytes]]) -> None:
    """Publish through JetStream, IN_FLIGHT at a time, each acked by its stream."""
    connection = nats.connection()
    js = connection.client().jetstream()

    async def send() -> None:
        for start in range(0, len(messages), IN_FLIGHT):
            chunk = messages[start : start + IN_FLIGHT]
            await asyncio.gather(
                *(
                    js.publish(subject, data, timeout=30, headers={"Nats-Msg-Id": uuid.uuid4().hex})
                    for subject, data in chunk
                )
            )

    connection.run(send(), timeout=120)


def test_random_and_hostile_payloads_on_every_subject_leave_the_bridge_running(nats_url, caplog):
    caplog.set_level(logging.ERROR, logger="mistersmith.live.bridge")  # rejections log warnings: thousands
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:12]
    agent = Agent.objects.create(name=f"fuzz-{run}", status="Running")  # the junk's target
    sentinel_agent = Agent.objects.create(name=f"fuzz-sentinel-{run}", status="Running")
    node = SupervisionNode.objects.create(node_id=f"fuzz-{run}", node_type="RootSupervisor")
    restart = SupervisionRestart.objects.create(
        node=node, restart_attempt_number=1, restart_delay_ms=0, command_sequence=1
    )
    subjects = subjects_by_stream(run, str(agent.pk))
    streams = list(subjects)
    messages = []
    for _ in range(MESSAGES):
        stream = rng.choice(streams)
        messages.append((rng.choice(subjects[stream]), junk(rng, stream, str(agent.pk))))
    for stream in streams:  # and each fixed hostile payload on every subject, the largest included
        for subject in set(subjects[stream]):
            messages.extend((subject, data) for data in hostile_bytes_examples(STREAMS[stream].max_msg_size - HEADROOM))
    rng.shuffle(messages)
    published = Counter(subject.split(".")[0] for subject, _ in messages)

    prefix = f"test-fuzz-{run}"
    bridge = BridgeThread(consumer_prefix=prefix, url=nats_url)
    bridge.start()
    try:
        assert bridge.ready.wait(30), "the bridge did not start"
        publish_all(messages)

        # One valid sentinel per feed, after all the junk: a feed applies its messages in order,
        # so a sentinel applied means every message before it was taken and settled.
        marker = uuid.uuid4().hex
        sentinels = [
            (
                f"agent.{sentinel_agent.pk}.events",
                envelope(
                    {
                        "StateChanged": {
                            "agent_id": str(sentinel_agent.pk),
                            "old_state": "Running",
                            "new_state": "Paused",
                        }
                    },
                    message_id=marker,
                ),
            ),
            (
                f"discoveries.{run}.insights",
                {
                    "agent_id": f"fuzz-{run}",
                    "agent_role": "sentinel",
                    "discovery_type": "Insight",
                    "content": f"sentinel {marker}",
                    "confidence": 1.0,
                    "timestamp": "2026-11-26T00:00:00Z",
                },
            ),
            ("system.control", {"RestartCompleted": {"restart_id": str(restart.pk), "success": True}}),
            (f"supervision.node.{run}.sentinel", {"marker": marker}),
            (f"supervision.node.{run}.end", b"not json: the supervision feed's end marker"),
        ]
        publish_all(
            [(subject, body if isinstance(body, bytes) else json.dumps(body).encode()) for subject, body in sentinels]
        )
        total = len(messages) + len(sentinels)

        def settled() -> bool:
            return (
                Agent.objects.get(pk=sentinel_agent.pk).status == "Paused"
                and Discovery.objects.filter(content=f"sentinel {marker}").exists()
                and SupervisionRestart.objects.get(pk=restart.pk).completed_at is not None
                and DeadLetter.objects.filter(subject=f"supervision.node.{run}.end").exists()
            )

        wait_until(settled, timeout=60, what="every feed to apply its sentinel after the junk")

        def counted() -> int:
            return sum(bridge.stats.processed.values()) + sum(bridge.stats.rejected.values())

        wait_until(lambda: counted() >= total, timeout=10, what="every message to be counted")
        assert bridge.is_alive(), "the bridge thread died"
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert not errors, f"the bridge stopped on an error: {errors[0].getMessage()}"
        assert sum(bridge.stats.rejected.values()) > 0 and bridge.stats.processed["restart_completed"] == 1
        print(
            f"published {dict(published)} + {len(sentinels)} sentinels; "
            f"processed {sum(bridge.stats.processed.values())}, rejected {dict(bridge.stats.rejected)}"
        )
    finally:
        bridge.stop()
        connections.close_all()
        delete_bridge_consumers(prefix)
    assert not bridge.is_alive()
