"""Frames are at least once across a leader change (issue 16, item 3).

A leading bridge commits a batch, then sends its frames: killed in between, it took the frames
with it, and a new leader starting after the committed position never sent them (3 events lost in
one run of five in the issue). The bridges here are ``manage.py bridge`` processes on a NATS server
of the test's own and the Redis channel layer (a prefix of the test's own); the test reads the
``agents`` and ``events`` groups as a socket's consumer does.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from django.db import connection

from agents.feeds import apply_agent_batch
from agents.models import Agent, InteractiveSession, SessionMessage
from bench.failover import BridgeProcess, FrameReader, SteadyPublisher, ensure_streams, wait_for_consumers
from mistersmith.embedded import postgres_url
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.leader import leader_pids
from mistersmith.live.models import BridgePosition
from mistersmith.live.registry import BridgeStats
from tests.conftest import wait_until
from tests.live.test_scale_out import redis_url
from tests.services import PrivateNats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROUNDS = 3
RATE = 300  # events/s


def bridge_env(nats_url: str, redis: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        "DATABASE_URL": postgres_url(connection.settings_dict),
        "NATS_URL": nats_url,
        "REDIS_URL": redis,
        "CHANNEL_LAYER_PREFIX": f"test-failover-{tag}:",
        "MISTERSMITH_BRIDGE_PREFIX": f"test-failover-{tag}",
    }


def publish_and_read_back(nats_url: str, messages: list[tuple[str, dict]]) -> list[tuple[int, str, bytes]]:
    """Publish to the stream, and the messages as the bridge fetches them: (sequence, subject, data)."""
    import nats

    async def work() -> list[tuple[int, str, bytes]]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            sequences = [(await js.publish(subject, json.dumps(body).encode())).seq for subject, body in messages]
            stored = [await js.get_msg("AGENT_EVENTS", sequence) for sequence in sequences]
            return [(message.seq, message.subject, message.data) for message in stored]
        finally:
            await client.close()

    return asyncio.run(work())


def test_what_a_dead_leader_committed_but_never_framed_is_framed_by_the_next_leader(tmp_path, stop_after):
    redis = redis_url()
    nats = stop_after(PrivateNats(tmp_path).start())
    ensure_streams(nats.url)
    env = bridge_env(nats.url, redis)
    consumer = f"{env['MISTERSMITH_BRIDGE_PREFIX']}-agents"
    agent = Agent.objects.create(name="failover", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    subject, agent_id = f"agent.{agent.pk}.events", str(agent.pk)
    stamp = {"secs_since_epoch": 1_790_000_000, "nanos_since_epoch": 0}
    batch = publish_and_read_back(
        nats.url,
        [(subject, {"Heartbeat": {"agent_id": agent_id, "timestamp": stamp}}) for _ in range(10)]
        + [(subject, {"StateChanged": {"agent_id": agent_id, "old_state": "Running", "new_state": "Paused"}})]
        + [(subject, {"Output": {"agent_id": agent_id, "content": "said once"}})],
    )
    sequences = {sequence for sequence, _, _ in batch}
    state_change = batch[10][0]

    # The leader applies and commits the batch, then dies before its frames go out.
    apply_agent_batch(batch, BridgeStats(), consumer, FrameBuffer())
    position = BridgePosition.objects.get(consumer=consumer)
    assert position.sequence == max(sequences) and position.framed_sequence == min(sequences) - 1
    assert position.unframed_results == {str(state_change): "state_changed"}

    reader = FrameReader(redis, env["CHANNEL_LAYER_PREFIX"])
    reader.start()
    bridge = None
    try:
        wait_until(reader.joined.is_set, timeout=10, what="the frame reader")
        assert reader.error is None, reader.error
        bridge = BridgeProcess(env)
        wait_until(
            lambda: not reader.missing(sequences) and not reader.missing(sequences, "events"),
            timeout=60,
            what="the committed batch framed by the next leader",
        )
        # framed again from the stream with what applying it did, not applied again
        assert reader.events[state_change]["result"] == "state_changed"
        assert reader.events[state_change]["status"] == "Paused"
        assert list(SessionMessage.objects.filter(session=session).values_list("content", flat=True)) == ["said once"]
        agent.refresh_from_db()
        assert agent.status == "Paused"
        # once idle, the new leader records that everything went out: the next takeover sends nothing again
        wait_until(
            lambda: BridgePosition.objects.get(consumer=consumer).framed_sequence == max(sequences),
            timeout=20,
            what="the framed position",
        )
        assert BridgePosition.objects.get(consumer=consumer).unframed_results == {}
    finally:
        reader.stop()
        if bridge is not None:
            bridge.stop()


def test_a_leader_killed_mid_stream_round_after_round_loses_no_frame(tmp_path, stop_after):
    redis = redis_url()
    nats = stop_after(PrivateNats(tmp_path).start())
    ensure_streams(nats.url)
    env = bridge_env(nats.url, redis)
    prefix = env["MISTERSMITH_BRIDGE_PREFIX"]
    agents = [str(Agent.objects.create(name=f"failover-{i}", status="Idle").pk) for i in range(5)]
    reader = FrameReader(redis, env["CHANNEL_LAYER_PREFIX"])
    publisher = SteadyPublisher(nats.url, agents, RATE)
    log = tmp_path / "bridges.log"  # the bridges' output, for a failure's story
    bridges = [BridgeProcess(env, log), BridgeProcess(env, log)]
    reader.start()
    try:
        wait_until(reader.joined.is_set, timeout=10, what="the frame reader")
        wait_until(lambda: len(leader_pids(prefix)) == 1, timeout=60, what="one leading bridge")
        wait_for_consumers(prefix, nats.url)
        publisher.start()
        for _ in range(ROUNDS):
            leader = next(bridge for bridge in bridges if bridge.pid == leader_pids(prefix)[0])
            highest = max(reader.highest(), publisher.highest())  # new events, not a takeover's repeats
            wait_until(
                lambda h=highest: reader.highest() > h + RATE // 2, timeout=30, what="new events framed by the leader"
            )
            leader.kill()  # mid-stream: a batch may be committed and its frames not yet sent
            bridges.remove(leader)
            bridges.append(BridgeProcess(env, log))  # the next standby
            wait_until(
                lambda killed=leader.pid: leader_pids(prefix)[:1] not in ([], [killed]),
                timeout=60,
                what="a standby leading",
            )
        published = publisher.stop()
        assert publisher.error is None, publisher.error
        assert len(published) > ROUNDS * RATE // 2
        try:
            wait_until(
                lambda: not reader.missing(published) and not reader.missing(published, "events"),
                timeout=90,
                what="every published event framed on both topics",
            )
        except AssertionError:
            missing = sorted(reader.missing(published))
            position = list(BridgePosition.objects.filter(consumer__startswith=prefix).values())
            print(len(published), max(published), len(missing), missing[:5], missing[-5:], position)
            raise
        assert reader.error is None, reader.error
    finally:
        publisher.stop()
        reader.stop()
        for bridge in bridges:
            bridge.stop()
