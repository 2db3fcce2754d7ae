"""First-start catch-up: a new bridge projecting 1,000,000 retained agent events (issue 11).

``EVENTS`` agent events (``AGENTS`` agents' lives as a rich runtime publishes them: Spawned, then
heartbeats, Processing/Idle state changes and outputs, interleaved across agents) are published
to AGENT_EVENTS on a nats-server of the benchmark's own, so the stream retains exactly these (on a
shared server others' messages pushed the oldest out, and a run whose agents are not all projected
without anomaly is refused, not reported).
A ``manage.py bridge`` process with a prefix nobody used starts on them: no consumer, no position,
so each feed catches up on what its stream retains before following live. Timed from the agents
feed's CatchUp row (started_at to finished_at), its RSS sampled every 0.5 s.

In the same run, over the same retained range, bare nats-py readers:
- the consumer the live bridge benchmark compares with (bench/bridge.py ``bare_consumer``): a
  durable pull consumer that fetches 100 at a time and acks every message; and the same fetching
  500 at a time;
- a reader without acks (``retained_messages``: the catch-up's own way of reading, in one process),
  which is the ceiling of reading the stream from Python at all.
The bridge's RSS is sampled, and so is its reading child's (the catch-up reads in a process of its
own: mistersmith/jetstream/range_reader.py); the figure is the peak of their sum.
Targets: at least 10,000 events/s, at least 0.8 x the bare consumer, peak RSS under 300 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.bridge import bare_consumer
from bench.bridge_memory import MB, RssSampler, alive
from bench.rebuild import agent_history
from bench.support import bench_database, free_port, machine, service_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 1_000_000
EVENTS_PER_AGENT = 100
WINDOW = 5_000
STREAM = "AGENT_EVENTS"


def events_for(agents: list[uuid.UUID], per_agent: int) -> Iterator[tuple[str, bytes]]:
    """The agents' histories interleaved (round robin), each in the runtime's envelope."""
    now = time.time_ns()
    stamp = {"secs_since_epoch": now // 10**9, "nanos_since_epoch": now % 10**9}
    histories = [agent_history(agent, per_agent) for agent in agents]
    for step in range(per_agent):
        for agent, history in zip(agents, histories, strict=True):
            envelope = {
                "message_id": str(uuid.uuid4()),
                "timestamp": stamp,
                "source_agent": None,
                "target_agent": None,
                "correlation_id": None,
                "payload": history[step],
            }
            yield f"agent.{agent}.events", json.dumps(envelope, separators=(",", ":")).encode()


async def publish(url: str, agents: list[uuid.UUID], per_agent: int) -> tuple[float, int, int]:
    """Publish every event (at most WINDOW unacknowledged); return (seconds, first, last sequence)."""
    import nats

    client = await nats.connect(url)
    js = client.jetstream(publish_async_max_pending=WINDOW)
    started = time.perf_counter()
    for subject, data in events_for(agents, per_agent):
        await js.publish_async(subject, data)
    await asyncio.wait_for(js.publish_async_completed(), 120)
    elapsed = time.perf_counter() - started
    state = (await js.stream_info(STREAM)).state
    await client.close()
    return elapsed, state.first_seq, state.last_seq


async def bare_reader(url: str, first: int, last: int) -> float:
    """Events/s of the catch-up's own reader (no acks, whole messages), doing nothing with them."""
    import nats

    from mistersmith.jetstream.history import retained_messages

    client = await nats.connect(url)
    seen, started = 0, time.perf_counter()
    try:
        async for messages in retained_messages(client.jetstream(), STREAM, first, last, batch=1000):
            seen += len(messages)
        return seen / (time.perf_counter() - started)
    finally:
        await client.close()


@contextlib.contextmanager
def private_nats() -> Iterator[str]:
    """A nats-server of the benchmark's own (its store in a temporary directory, removed after): the
    stream then retains exactly the published events, whoever else uses the machine's NATS."""
    from mistersmith.embedded import nats_server_binary

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-catchup-nats-") as store:
        server = subprocess.Popen(
            [nats_server_binary(), "--jetstream", "--store_dir", store, "--addr", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: _listening(port), 20, "the benchmark's nats-server")
            yield f"nats://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(20)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def make_streams(url: str) -> None:
    """The contract's streams on the benchmark's server, as the console makes them."""
    import nats

    from mistersmith.jetstream.streams import ensure_streams

    client = await nats.connect(url)
    await ensure_streams(client.jetstream())
    await client.close()


def run(events: int = EVENTS) -> Iterator[dict]:
    from agents.models import Agent, AgentAnomaly
    from mistersmith.jetstream.client import SyncNats
    from mistersmith.live.bridge import consumers_exist
    from mistersmith.live.models import BridgePosition, CatchUp

    with bench_database("catchup"), private_nats() as url:
        asyncio.run(make_streams(url))
        per_agent = min(EVENTS_PER_AGENT, events)
        agents = [uuid.uuid4() for _ in range(max(1, events // per_agent))]
        publish_seconds, first, last = asyncio.run(publish(url, agents, per_agent))
        prefix = f"bench-catchup-{uuid.uuid4().hex[:8]}"
        own = SyncNats(url, create_streams=False)
        bridge = subprocess.Popen(
            [sys.executable, "manage.py", "bridge"],
            cwd=ROOT,
            env=service_env(MISTERSMITH_BRIDGE_PREFIX=prefix, MISTERSMITH_BRIDGE_CATCH_UP="1", NATS_URL=url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        sampler = RssSampler(bridge.pid, children=True)
        sampler.start()
        started = time.perf_counter()
        try:

            def finished() -> bool:
                return CatchUp.objects.filter(consumer=f"{prefix}-agents", finished_at__isnull=False).exists()

            wait_for(lambda: alive(bridge) and finished(), 1800, "the agents feed's catch-up", 0.2)
            wall = time.perf_counter() - started
            sampler.stop()
            row = CatchUp.objects.get(consumer=f"{prefix}-agents")
            seconds = (row.finished_at - row.started_at).total_seconds()
            projected = Agent.objects.filter(pk__in=agents).count()
            anomalies = AgentAnomaly.objects.filter(agent_id__in=agents).count()
            # The feeds after agents catch up in their turn; stopped before, a feed has no consumer to delete.
            wait_for(lambda: alive(bridge) and consumers_exist(prefix, client=own), 300, "the bridge's consumers", 0.2)
        finally:
            sampler.stop()
            bridge.send_signal(signal.SIGINT)
            try:
                bridge.wait(30)
            except subprocess.TimeoutExpired:
                bridge.kill()
            BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
            CatchUp.objects.filter(consumer__startswith=f"{prefix}-").delete()
            own.close()
            Agent.objects.filter(pk__in=agents).delete()
        if projected != len(agents) or anomalies:
            raise RuntimeError(
                f"The catch-up projected {projected} of {len(agents)} agents with {anomalies} anomalies: "
                "the stream did not hold the published lives whole, so the figures would mean nothing."
            )
        events = last - first + 1
        acking = asyncio.run(bare_consumer(url, f"bench-catchup-bare-{prefix[-8:]}", first, events, last_sequence=last))
        acking_500 = asyncio.run(
            bare_consumer(url, f"bench-catchup-bare500-{prefix[-8:]}", first, events, fetch=500, last_sequence=last)
        )
        reading = asyncio.run(bare_reader(url, first, last))
        rate = row.total / seconds
        yield {
            "figure": "catch_up_first_start",
            "events": row.total,
            "range": [row.first_sequence, row.target_sequence],
            "agents_projected": projected,
            "anomalies": anomalies,
            "catch_up_s": round(seconds, 1),
            "bridge_start_to_caught_up_s": round(wall, 1),
            "events_per_s": round(rate),
            "bare_consumer_events_per_s": round(acking),
            "ratio_to_bare_consumer": round(rate / acking, 2),
            "bare_consumer_fetching_500_events_per_s": round(acking_500),
            "ratio_to_bare_consumer_fetching_500": round(rate / acking_500, 2),
            "bare_reader_no_acks_events_per_s": round(reading),
            "ratio_to_bare_reader": round(rate / reading, 2),
            "start_rss_mb": round(sampler.samples[0] / MB, 1),
            "peak_rss_mb": round(max(sampler.samples) / MB, 1),  # the bridge and its reading child together
            "publish_s": round(publish_seconds, 1),
            "machine": f"{machine()}: bridge, PostgreSQL, NATS and the readers share them",
            "target": {"events_per_s": 10_000, "ratio_to_bare_consumer": 0.8, "peak_rss_mb": 300},
        }
