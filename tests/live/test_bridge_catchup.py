"""A bridge's first start on streams that a runtime filled beforehand (mistersmith/live/catchup.py).

Each test has a NATS server of its own, so the streams hold exactly the history the test wrote;
the messages are shaped byte for byte as the runtime's serde writes them (envelope with a SystemTime,
externally tagged variants, bare strings for unit variants, explicit nulls). What the catch-up
makes is compared with what ``rebuild_projections --from-scratch`` makes from the same streams.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from agents.commands import send_agent_command
from agents.models import Agent, AgentAnomaly, Discovery, InteractiveSession, SessionMessage
from mistersmith.embedded import postgres_url
from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.client import SyncNats
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import BridgePosition, CatchUp
from mistersmith.operations.rebuild import rebuild_projections
from tests.agents.test_command_replies import Runtime as CommandRuntime
from tests.agents.test_commands import Subscriber
from tests.conftest import wait_until
from tests.live.payloads import runtime_bytes, spawned_event
from tests.services import PrivateNats

pytestmark = [pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]


def discovery_bytes(agent: str, content: str) -> bytes:
    body = {
        "agent_id": agent,
        "agent_role": "researcher",
        "discovery_type": "Insight",
        "content": content,
        "confidence": 0.75,
        "timestamp": "2026-12-04T10:00:00.123456Z",
        "related_to": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class Runtime:
    """Publishes as the runtime does: plain publishes captured by the streams, no Nats-Msg-Id."""

    def __init__(self, url: str) -> None:
        self.client = SyncNats(url)

    def publish(self, subject: str, data: bytes) -> int:
        return self.client.run(self.client.client().jetstream().publish(subject, data)).seq

    def agent(self, agent: uuid.UUID, payload: dict) -> int:
        return self.publish(f"agent.{agent}.events", runtime_bytes(payload))

    def publish_all(self, messages: list[tuple[str, bytes]]) -> int:
        """Publish many, a few hundred in flight at a time, in order; returns the last sequence."""
        import asyncio

        js = self.client.client().jetstream()

        async def send() -> int:
            last = 0
            for start in range(0, len(messages), 500):
                acks = await asyncio.gather(*(js.publish(s, d) for s, d in messages[start : start + 500]))
                last = max(ack.seq for ack in acks)
            return last

        return self.client.run(send(), 120)

    @staticmethod
    def life(agent: uuid.UUID, beats: int) -> list[tuple[str, bytes]]:
        """A spawned agent's events as a rich runtime would publish them."""
        subject = f"agent.{agent}.events"
        events = [spawned_event(agent, memory_limit_mb=None)]
        for beat in range(beats):
            stamp = {"secs_since_epoch": 1_800_000_000 + beat, "nanos_since_epoch": 5}
            events.append({"Heartbeat": {"agent_id": str(agent), "timestamp": stamp}})
            events.append({"StateChanged": {"agent_id": str(agent), "old_state": "Running", "new_state": "Paused"}})
            events.append({"StateChanged": {"agent_id": str(agent), "old_state": "Paused", "new_state": "Running"}})
        return [(subject, runtime_bytes(event)) for event in events]

    def close(self) -> None:
        self.client.close()


def projections() -> dict[str, list]:
    """What the bridge and a rebuild both make, without the times they made it at."""
    return {
        "agents": sorted(Agent.objects.values_list("id", "status", "last_heartbeat", "memory_limit_mb")),
        "anomalies": sorted(
            AgentAnomaly.objects.values_list(
                "agent_id", "event_kind", "current_state", "attempted_state", "stream_sequence"
            )
        ),
        "discoveries": sorted(Discovery.objects.values_list("stream_sequence", "agent_id", "content")),
        "session_messages": sorted(
            SessionMessage.objects.values_list("session_id", "position", "content", "stream_sequence")
        ),
    }


def rebuilt_from_scratch(url: str, prefix: str, monkeypatch) -> dict[str, list]:
    """The projections after ``rebuild_projections --from-scratch`` on the test's own NATS."""
    private = SyncNats(url)
    monkeypatch.setattr(console_nats, "_connection", private)
    try:
        rebuild_projections(from_scratch=True, consumer_prefix=prefix)
    finally:
        monkeypatch.undo()
        private.close()
    return projections()


def catch_ups(prefix: str) -> dict[str, CatchUp]:
    return {row.consumer.removeprefix(f"{prefix}-"): row for row in CatchUp.objects.filter(consumer__startswith=prefix)}


def test_a_first_start_shows_what_the_streams_held_then_follows_live(tmp_path, stop_after, monkeypatch, admin_user):
    nats = stop_after(PrivateNats(tmp_path).start())
    runtime = Runtime(nats.url)
    running, stopped, paused = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for agent in (running, stopped, paused):
        runtime.agent(agent, spawned_event(agent, memory_limit_mb=None))
    runtime.agent(stopped, {"Terminated": {"agent_id": str(stopped), "reason": "graceful_stop"}})
    runtime.agent(paused, {"StateChanged": {"agent_id": str(paused), "old_state": "Running", "new_state": "Paused"}})
    for index in range(3):
        runtime.publish(f"discoveries.{running}.insights", discovery_bytes(str(running), f"insight {index} " * 2000))
    runtime.publish("system.control", runtime_bytes("Startup"))
    last_agent_event = runtime.agent(
        running,
        {
            "Heartbeat": {
                "agent_id": str(running),
                "timestamp": {"secs_since_epoch": 1_800_000_000, "nanos_since_epoch": 0},
            }
        },
    )

    prefix = f"test-catchup-{uuid.uuid4().hex[:8]}"
    bridge = BridgeThread(consumer_prefix=prefix, url=nats.url, catch_up=True)
    bridge.start()
    try:
        assert bridge.ready.wait(30)
        statuses = dict(Agent.objects.values_list("id", "status"))
        assert statuses == {running: "Running", stopped: "Terminated", paused: "Paused"}
        assert Agent.objects.get(pk=running).memory_limit_mb is None  # null means no limit, not 512
        assert Discovery.objects.count() == 3
        assert all(
            len(content) == len("insight 0 ") * 2000 for content in Discovery.objects.values_list("content", flat=True)
        )
        rows = catch_ups(prefix)
        assert set(rows) == {"agents", "discoveries", "control", "supervision"}
        assert all(row.finished_at is not None and row.done == row.total for row in rows.values())
        assert rows["agents"].total == last_agent_event
        assert BridgePosition.objects.get(consumer=f"{prefix}-agents").sequence == last_agent_event
        assert not AgentAnomaly.objects.exists()

        # Then live: a message after the retained range is applied once, and nothing before it twice.
        later = uuid.uuid4()
        runtime.agent(later, spawned_event(later, memory_limit_mb=None))
        runtime.agent(
            paused, {"StateChanged": {"agent_id": str(paused), "old_state": "Paused", "new_state": "Running"}}
        )
        wait_until(lambda: Agent.objects.filter(pk=later, status="Running").exists(), what="the live Spawned")
        wait_until(lambda: Agent.objects.filter(pk=paused, status="Running").exists(), what="the live resume")
        assert not AgentAnomaly.objects.exists()

        # Commands work on an agent the console learned of from the history: Pause, as the runtime answers it.
        commands = SyncNats(nats.url)
        monkeypatch.setattr(console_nats, "_connection", commands)
        responder = Subscriber("agent.command", CommandRuntime("Running"))
        try:
            reply = send_agent_command(admin_user, Agent.objects.get(pk=running), "pause")
            assert reply.ok and Agent.objects.get(pk=running).status == "Paused"
        finally:
            responder.close()
            monkeypatch.undo()
            commands.close()
    finally:
        bridge.stop()
        runtime.close()

    caught_up = projections()
    assert caught_up == rebuilt_from_scratch(nats.url, prefix, monkeypatch)


def test_an_empty_stream_is_no_catch_up_and_a_restart_catches_up_nothing_again(tmp_path, stop_after):
    nats = stop_after(PrivateNats(tmp_path).start())
    runtime = Runtime(nats.url)
    prefix = f"test-catchup-{uuid.uuid4().hex[:8]}"
    agent = uuid.uuid4()
    try:
        for _ in range(2):  # the second start finds its consumers: no catch-up, history applied once
            bridge = BridgeThread(consumer_prefix=prefix, url=nats.url, catch_up=True)
            bridge.start()
            try:
                assert bridge.ready.wait(30)
                runtime.agent(agent, spawned_event(agent, memory_limit_mb=None))
                wait_until(lambda: Agent.objects.filter(pk=agent).exists(), what="the agent")
            finally:
                bridge.stop()
        assert catch_ups(prefix)["agents"].total == 0
        assert AgentAnomaly.objects.count() == 0  # the second Spawned found the agent Running: in sync
    finally:
        runtime.close()


def start_bridge_process(prefix: str, url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MISTERSMITH_BRIDGE_PREFIX": prefix,
        "MISTERSMITH_BRIDGE_CATCH_UP": "1",
        "MISTERSMITH_BRIDGE_CATCH_UP_CHUNK": "5000",  # several chunks, so a kill can land between two
        "NATS_URL": url,
        "DATABASE_URL": postgres_url(connection.settings_dict),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "bridge"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_after_a_mixed_run_the_projections_equal_a_rebuild(tmp_path, stop_after, monkeypatch):
    """History before the first start, a catch-up killed with SIGKILL and resumed, live events, the
    bridge killed again mid-stream: the projections are what a rebuild from the streams makes."""
    nats = stop_after(PrivateNats(tmp_path).start())
    runtime = Runtime(nats.url)
    talker = Agent.objects.create(name="talker", status="Running")  # a session to take Output
    session = InteractiveSession.objects.create(agent=talker, state="Ready")
    agents = [uuid.uuid4() for _ in range(60)]
    lives = [Runtime.life(agent, beats=100) for agent in agents]  # 60 x 301 = 18,060 retained events
    runtime.publish_all([event for step in zip(*lives, strict=True) for event in step])  # interleaved
    for index in range(200):
        runtime.agent(talker.pk, {"Output": {"agent_id": str(talker.pk), "content": f"before-{index}"}})
    runtime.agent(
        agents[0], {"StateChanged": {"agent_id": str(agents[0]), "old_state": "Idle", "new_state": "Running"}}
    )
    prefix = f"test-mixed-{uuid.uuid4().hex[:8]}"

    bridge = start_bridge_process(prefix, nats.url)
    try:
        # killed during its catch-up, once it has applied something
        wait_until(
            lambda: CatchUp.objects.filter(consumer=f"{prefix}-agents", applied_sequence__gt=0).exists(),
            timeout=60,
            what="the catch-up under way",
        )
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        interrupted = CatchUp.objects.get(consumer=f"{prefix}-agents")
        assert interrupted.finished_at is None and 0 < interrupted.done < interrupted.total, interrupted
        bridge = start_bridge_process(prefix, nats.url)
        wait_until(
            lambda: CatchUp.objects.filter(consumer=f"{prefix}-agents", finished_at__isnull=False).exists(),
            timeout=120,
            what="the catch-up to finish",
        )

        def live() -> None:
            for index in range(300):
                runtime.agent(talker.pk, {"Output": {"agent_id": str(talker.pk), "content": f"live-{index}"}})
            for agent in agents[:10]:
                runtime.agent(agent, {"Terminated": {"agent_id": str(agent), "reason": "forced_stop"}})

        publisher = threading.Thread(target=live)
        publisher.start()
        wait_until(
            lambda: SessionMessage.objects.filter(session=session).count() >= 250, timeout=60, what="live output"
        )
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        publisher.join(60)
        last = runtime.agent(agents[-1], {"Terminated": {"agent_id": str(agents[-1]), "reason": "graceful_stop"}})
        bridge = start_bridge_process(prefix, nats.url)
        wait_until(
            lambda: BridgePosition.objects.filter(consumer=f"{prefix}-agents", sequence__gte=last).exists(),
            timeout=60,
            what="the bridge to reach the stream's end",
        )
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
        runtime.close()

    contents = list(
        SessionMessage.objects.filter(session=session).order_by("position").values_list("content", flat=True)
    )
    assert contents == [f"before-{i}" for i in range(200)] + [f"live-{i}" for i in range(300)]  # once each, in order
    assert Agent.objects.filter(pk__in=agents[:10], status="Terminated").count() == 10
    live_projections = projections()
    assert live_projections == rebuilt_from_scratch(nats.url, prefix, monkeypatch)


def catch_up(consumer: str, stream: str, applied: int, target: int, *, finished: bool = False) -> CatchUp:
    """A catch-up of ``stream`` from sequence 1 to ``target``, started now, ``applied`` of it done."""
    now = timezone.now()
    return CatchUp.objects.create(
        consumer=consumer,
        stream=stream,
        first_sequence=1,
        target_sequence=target,
        applied_sequence=applied,
        started_at=now,
        finished_at=now if finished else None,
    )


def test_a_catch_up_under_way_is_shown_in_verify_state_metrics_and_the_pages(admin_client, monkeypatch):
    from mistersmith.operations.verify import report as verify
    from tests.operations.test_metrics import scrape, value

    prefix = f"test-progress-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", prefix)
    catch_up(f"{prefix}-agents", "AGENT_EVENTS", applied=250, target=1000)
    catch_up(f"{prefix}-discoveries", "DISCOVERIES", applied=10, target=10, finished=True)  # says nothing

    rows = [row for row in verify.run(consumer_prefix=prefix).rows if row.check.startswith("catch-up")]
    assert [(row.check, row.found, row.status) for row in rows] == [
        ("catch-up agents", "catching up: 250 of 1,000", "degraded")
    ]
    assert value(scrape(), "mistersmith_feed_catch_up_remaining", feed="agents", stream="AGENT_EVENTS") == 750
    assert value(scrape(), "mistersmith_feed_catch_up_remaining", feed="discoveries", stream="DISCOVERIES") == 0
    body = admin_client.get(reverse("dashboard:freshness")).json()
    agents = next(feed for feed in body["feeds"] if feed["feed"] == "agents")
    assert agents["text"] == "catching up: 250 of 1,000" and agents["catch_up"] == {"done": 250, "total": 1000}
    assert body["text"] == "agents: catching up: 250 of 1,000"


async def test_the_reading_process_failing_is_an_error_not_a_hang():
    from mistersmith.jetstream.range_reader import RangeReadError, read_range_in_child

    chunks = read_range_in_child(["nats://127.0.0.1:1"], "AGENT_EVENTS", 1, 10, chunk_messages=10, chunk_bytes=1024)
    with pytest.raises(RangeReadError, match=r"nats|connect|refused|servers"):
        async for _ in chunks:
            pass
