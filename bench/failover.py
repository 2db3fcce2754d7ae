"""Leader kills: how long the live pages wait for a new leading bridge, and what they lose.

Two ``manage.py bridge`` processes on one consumer prefix (one leads through its PostgreSQL
advisory lock, the other stands by) on the Redis channel layer (REDIS_URL, required; a
channel-layer prefix of this run's own) and a NATS server of this run's own (an empty JetStream:
no other publisher shares its streams). A publisher outside them sends agent heartbeats at a
steady rate; this process reads the ``agents`` and ``events`` groups as a socket's consumer does
(a channel-layer group member). Each round SIGKILLs the leader mid-stream and starts a new
standby in its place.

Figures: the failover gap (the kill to the first frame of the new leader: the first frame after
the silence that follows the kill), and the events lost over all the kills (published, and on
neither topic once the stream has drained; target 0). Events framed twice are counted too: frames
are at least once across a leader change and pages drop what they already applied.

The harness (FrameReader, SteadyPublisher, BridgeProcess) is also tests/live/test_bridge_failover.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
KILLS = 10
RATE = 500  # events/s
TOPICS = ("agents", "events")
SILENCE_SECONDS = 0.5  # a pause in frames this long after a kill is the failover's gap


class FrameReader(threading.Thread):
    """A member of the live groups of ``topics`` on the Redis channel layer (what a socket's consumer
    is), on a thread and event loop of its own: per topic, how many times each AGENT_EVENTS
    sequence came, and when each frame arrived (monotonic time, its sequences)."""

    def __init__(self, redis_url: str, layer_prefix: str, topics: tuple[str, ...] = TOPICS) -> None:
        super().__init__(name="frame-reader", daemon=True)
        self.redis_url, self.layer_prefix, self.topics = redis_url, layer_prefix, topics
        self.received: dict[str, Counter] = {topic: Counter() for topic in topics}
        self.arrivals: list[tuple[float, str, list[int]]] = []
        self.events: dict[int, dict] = {}  # the last ``agents`` event seen per sequence
        self.lock = threading.Lock()
        self.joined = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as error:  # reported by the caller (a test's assertion)
            self.error = error
            self.joined.set()

    async def _read(self) -> None:
        from channels_redis.core import RedisChannelLayer

        from mistersmith.live.frames import group_name

        layer = RedisChannelLayer(hosts=[self.redis_url], prefix=self.layer_prefix, capacity=10_000)
        channel = await layer.new_channel()
        for topic in self.topics:
            await layer.group_add(group_name(topic), channel)
        self.joined.set()
        try:
            while not self.stopping.is_set():
                try:
                    message = await asyncio.wait_for(layer.receive(channel), 0.5)
                except TimeoutError:
                    continue
                if message.get("type") == "frame" and message.get("topic") in self.received:
                    self._note(message)
        finally:
            await layer.flush()  # this run's prefix only: every key the bridges and the reader made

    def _note(self, message: dict) -> None:
        topic = message["topic"]
        events = [e for e in json.loads(message["text"])["events"] if e.get("stream") == "AGENT_EVENTS"]
        sequences = [event["sequence"] for event in events]
        with self.lock:
            self.received[topic].update(sequences)
            self.arrivals.append((time.monotonic(), topic, sequences))
            if topic == "agents":
                self.events.update((event["sequence"], event) for event in events)

    def missing(self, published: set[int], topic: str = "agents") -> set[int]:
        with self.lock:
            return published - self.received[topic].keys()

    def count(self, topic: str = "agents") -> int:
        """Deliveries so far on ``topic``, repeats included."""
        with self.lock:
            return sum(self.received[topic].values())

    def highest(self, topic: str = "agents") -> int:
        """The highest sequence framed so far on ``topic`` (0 before any)."""
        with self.lock:
            return max(self.received[topic], default=0)

    def repeated(self, topic: str = "agents") -> int:
        """Deliveries beyond the first (frames sent again after a takeover)."""
        with self.lock:
            return sum(times - 1 for times in self.received[topic].values())

    def frames_since(self, moment: float) -> list[float]:
        with self.lock:
            return [arrival for arrival, _, _ in self.arrivals if arrival > moment]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class SteadyPublisher(threading.Thread):
    """Agent heartbeats at ``rate`` per second, spread over ``agents``, until stopped: the stream
    sequences of what was published (the ones JetStream acknowledged)."""

    def __init__(self, nats_url: str, agents: list[str], rate: int) -> None:
        super().__init__(name="publisher", daemon=True)
        self.nats_url, self.agents, self.rate = nats_url, agents, rate
        self.published: set[int] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as error:
            self.error = error

    async def _publish(self) -> None:
        import nats

        client = await nats.connect(self.nats_url)
        try:
            js = client.jetstream()
            started, index = time.monotonic(), 0
            while not self.stopping.is_set():
                agent = self.agents[index % len(self.agents)]
                stamp = {"secs_since_epoch": 1_790_000_000 + index, "nanos_since_epoch": 0}
                body = {"Heartbeat": {"agent_id": agent, "timestamp": stamp}}
                ack = await js.publish(f"agent.{agent}.events", json.dumps(body).encode())
                with self.lock:
                    self.published.add(ack.seq)
                index += 1
                ahead = started + index / self.rate - time.monotonic()
                if ahead > 0:  # pacing the publisher to its rate (not waiting for a condition)
                    await asyncio.sleep(ahead)
        finally:
            await client.close()

    def highest(self) -> int:
        with self.lock:
            return max(self.published, default=0)

    def stop(self) -> set[int]:
        self.stopping.set()
        if self.is_alive():  # not started when the run failed before publishing: keep that error
            self.join(30)
        with self.lock:
            return set(self.published)


class BridgeProcess:
    """``manage.py bridge`` in a process of its own, with ``env`` (NATS_URL, DATABASE_URL, REDIS_URL,
    CHANNEL_LAYER_PREFIX, MISTERSMITH_BRIDGE_PREFIX)."""

    def __init__(self, env: dict[str, str], log: Path | None = None) -> None:
        self.log = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "bridge"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def ensure_streams(nats_url: str) -> None:
    """The console's streams on a NATS server (the bridge makes them too; a publisher may be first)."""
    import nats

    from mistersmith.jetstream.streams import ensure_streams as ensure

    async def work() -> None:
        client = await nats.connect(nats_url)
        try:
            await ensure(client.jetstream())
        finally:
            await client.close()

    asyncio.run(work())


def wait_for_consumers(prefix: str, nats_url: str, timeout: float = 60) -> None:
    """Until the leader's durable consumers exist on ``nats_url``: what is published before that is a
    first start's history (a catch-up projects it, frames none), not a live event."""
    from mistersmith.jetstream.client import SyncNats
    from mistersmith.live.bridge import consumers_exist

    client = SyncNats(nats_url)
    try:
        deadline = time.monotonic() + timeout
        while not consumers_exist(prefix, client):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the consumers of bridge {prefix} not made within {timeout:g} s")
            time.sleep(0.05)
    finally:
        client.close()


def failover_gap(reader: FrameReader, killed_at: float) -> float | None:
    """Seconds from the kill to the first frame after the silence that follows it (the frames the
    dead leader sent before it died may still be read just after the kill)."""
    arrivals = reader.frames_since(killed_at)
    previous = killed_at
    for arrival in arrivals:
        if arrival - previous >= SILENCE_SECONDS:
            return arrival - killed_at
        previous = arrival
    return None


def run(kills: int = KILLS, rate: int = RATE) -> Iterator[dict]:
    from agents.models import Agent
    from bench.support import bench_database, machine, service_env, wait_for
    from bench.support import percentile as pick
    from mistersmith.live.leader import leader_pids
    from mistersmith.live.models import BridgePosition
    from tests.services import PrivateNats

    url = os.environ.get("REDIS_URL")
    if not url:
        raise SystemExit("bench failover needs REDIS_URL (the machine's Redis)")
    tag = uuid.uuid4().hex[:8]
    prefix, layer_prefix = f"bench-failover-{tag}", f"bench-failover-{tag}:"
    with tempfile.TemporaryDirectory() as directory, bench_database():
        nats = PrivateNats(Path(directory)).start()
        env = service_env()
        env.update(
            NATS_URL=nats.url, REDIS_URL=url, CHANNEL_LAYER_PREFIX=layer_prefix, MISTERSMITH_BRIDGE_PREFIX=prefix
        )
        agents = [str(a.pk) for a in Agent.objects.bulk_create(Agent(name=f"{prefix}-{i}") for i in range(5))]
        ensure_streams(nats.url)
        reader, publisher = FrameReader(url, layer_prefix), SteadyPublisher(nats.url, agents, rate)
        bridges = [BridgeProcess(env), BridgeProcess(env)]
        gaps: list[float] = []
        try:
            reader.start()
            wait_for(reader.joined.is_set, 10, "the frame reader")
            wait_for(lambda: len(leader_pids(prefix)) == 1, 60, "one leading bridge")
            wait_for_consumers(prefix, nats.url)
            publisher.start()
            for _ in range(kills):
                leader = next(b for b in bridges if b.pid == leader_pids(prefix)[0])
                highest = max(reader.highest(), publisher.highest())
                wait_for(lambda h=highest: reader.highest() > h + rate // 2, 30, "new events framed by the leader")
                killed_at = time.monotonic()
                leader.kill()
                bridges.remove(leader)
                bridges.append(BridgeProcess(env))  # the next standby
                wait_for(lambda at=killed_at: failover_gap(reader, at) is not None, 60, "a frame from the new leader")
                gaps.append(failover_gap(reader, killed_at))
            published = publisher.stop()
            with contextlib.suppress(RuntimeError):  # the figure says how many did not come
                wait_for(lambda: not reader.missing(published), 60, "every published event framed")
            lost = len(reader.missing(published))
        finally:
            publisher.stop()
            reader.stop()
            for bridge in bridges:
                bridge.stop()
            BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
            Agent.objects.filter(name__startswith=prefix).delete()
            nats.stop()
        gaps.sort()
        common = {"machine": machine(), "kills": kills, "rate": rate}
        yield {
            "figure": "failover gap (kill to first frame of the new leader)",
            "p50_s": round(pick(gaps, 0.5), 2),
            "max_s": round(gaps[-1], 2),
            "gaps_s": [round(g, 2) for g in gaps],
            "unit": "s",
            **common,
        }
        yield {
            "figure": "events lost over the leader kills",
            "value": lost,
            "published": len(published),
            "framed_twice": reader.repeated(),
            "unit": "events",
            "target": 0,
            **common,
        }
