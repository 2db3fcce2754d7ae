"""Scale-out load: 500 WebSockets held over two console workers while 1,000 agent events/s flow.

The deployment docs/deploy.md describes, on one machine: ``WORKERS`` console processes (uvicorn,
each with the bridge in process, all on one consumer prefix: one bridge leads through its
PostgreSQL advisory lock, the others stand by) on the Redis channel layer (REDIS_URL, required; a
channel-layer prefix of this run's own), on the bench database. This process holds ``SOCKETS``
WebSockets of a staff user on the ``agents`` topic, spread evenly over the workers, and publishes
``RATE`` events/s for ``SECONDS`` s with bench/live_latency.py's publisher. The same load runs first
on one worker with the in-memory channel layer (the single-process deployment), side by side in the
same run (``LAYERS``): what Redis and a second worker cost is the difference of the two lines.

Latency, per socket per event, as in live_latency: frame arrival minus the time the event was
handed to the NATS client. At this scale (30 million deliveries a minute) the client does little
while it receives: a frame's text is parsed once for all the sockets that get it, each socket notes
(arrival, sequences) per frame, and the latencies are worked out after the run, into a 0.1 ms
histogram.

Errors (the issue's target: none): sockets that failed to connect or subscribe, sockets closed
before the end, lost deliveries ((event, socket) pairs published and never received), duplicates
(an event twice on one socket), failed publishes. The client, both workers, PostgreSQL, NATS and
Redis share the machine's cores: the CPU shares and the load average are part of the figures.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.live_latency import (
    AGENTS,
    WARMUP_EVENTS,
    Publisher,
    cpu_seconds,
    machine_pct,
    staff_cookie,
    start_server,
    stop_server,
)
from bench.sockets import subscribed_socket
from bench.support import bench_database, free_port, machine, wait_for

RATE = 1000  # events/s
SECONDS = 60
SOCKETS = 500
WORKERS = 2
CONNECTING_AT_ONCE = 50  # sockets opening at the same time (a crowd of browsers, not one burst)
DRAIN_SECONDS = 30  # after the last publish: how long the sockets may take to receive the rest
BUCKETS_PER_MS = 10  # the latency histogram's resolution: 0.1 ms
MAX_LATENCY_S = 120  # its last bucket: this or more


@dataclass
class Window:
    """The measured stream sequences: ``base`` .. ``base + size - 1``, once ``open``."""

    base: int = 0
    size: int = 0
    open: bool = False


class FrameCache:
    """The AGENT_EVENTS sequences of a frame, parsed once for all the sockets that get the same text
    (the server encodes a frame once for every socket): the client's cost must not be the figure."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.known: dict[bytes, tuple[int, tuple[int, ...]]] = {}

    def sequences(self, data: bytes) -> tuple[int, tuple[int, ...]]:
        """(the highest sequence, every sequence) of the frame's AGENT_EVENTS events."""
        found = self.known.get(data)
        if found is None:
            frame = json.loads(data)
            events = frame.get("events", ()) if frame.get("topic") == "agents" else ()
            sequences = tuple(event["sequence"] for event in events if event.get("stream") == "AGENT_EVENTS")
            found = self.known[data] = (max(sequences, default=0), sequences)
            if len(self.known) > self.size:
                del self.known[next(iter(self.known))]
        return found


@dataclass
class Tally:
    """What one socket received: the frames (arrival time, sequences) while the window is open."""

    frames: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    events: int = 0  # sequences in those frames
    last: int = 0  # the highest AGENT_EVENTS sequence seen, warm-up included


async def receive(socket, tally: Tally, window: Window, cache: FrameCache) -> None:
    """Note each frame's arrival on this socket until it closes; accounted for after the run."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            data = await socket.recv(decode=False)
            arrived = time.perf_counter()
            last, sequences = cache.sequences(data)
            if sequences:
                tally.last = max(tally.last, last)
                if window.open:
                    tally.frames.append((arrived, sequences))
                    tally.events += len(sequences)
    except ConnectionClosed:
        pass  # counted by the caller: a receiver that ended before the run did is a closed socket


async def open_socket(url: str, cookie: str) -> object:
    """A socket subscribed to ``agents`` on the worker at ``url`` (``ws://host:port/ws/live/``)."""
    return await subscribed_socket(
        url.split("/ws/")[0].replace("ws://", "http://"), cookie, ["agents"], max_size=2**24, open_timeout=60
    )


async def open_sockets(urls: list[str], cookie: str, count: int) -> tuple[list[tuple[int, object]], Counter]:
    """``count`` sockets, round-robin over ``urls``: (worker index, socket) pairs and the failures by kind."""
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    failures: Counter = Counter()

    async def one(index: int) -> tuple[int, object] | None:
        worker = index % len(urls)
        async with gate:
            try:
                return worker, await open_socket(urls[worker], cookie)
            except Exception as error:  # every failure is a figure, not a crash
                failures[f"{type(error).__name__}: {str(error)[:120]}"] += 1
                return None

    opened = await asyncio.gather(*(one(index) for index in range(count)))
    return [pair for pair in opened if pair is not None], failures


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def histogram_percentile(histogram: list[int], total: int, fraction: float) -> float:
    """Nearest-rank percentile, in ms, of a histogram of 0.1 ms buckets (as support.percentile)."""
    if not total:
        return math.nan
    rank = min(total, max(1, round(fraction * total)))
    seen = 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return bucket / BUCKETS_PER_MS
    return math.nan


def delivery_figures(tallies: list[Tally], window: Window, published: dict[int, float]) -> dict:
    """Latency percentiles, lost and duplicated deliveries of the measured events over every socket."""
    handed = [math.nan] * window.size  # by sequence - base: when this run handed the event over
    for sequence, at in published.items():
        if 0 <= sequence - window.base < window.size:
            handed[sequence - window.base] = at
    ours = window.size - sum(1 for at in handed if at != at)
    lost = (len(published) - ours) * len(tallies)  # published outside the window: never measured
    histogram = [0] * (BUCKETS_PER_MS * 1000 * MAX_LATENCY_S + 1)  # the last bucket: MAX_LATENCY_S or more
    top = len(histogram) - 1
    duplicates = 0
    slowest = 0.0
    for tally in tallies:
        seen = bytearray(window.size)
        got = 0
        for arrived, sequences in tally.frames:
            for sequence in sequences:
                index = sequence - window.base
                if not 0 <= index < window.size or handed[index] != handed[index]:
                    continue  # not an event of this run's window
                if seen[index]:
                    duplicates += 1
                    continue
                seen[index] = 1
                got += 1
                latency = arrived - handed[index]
                slowest = max(slowest, latency)
                histogram[min(top, max(0, round(latency * 1000 * BUCKETS_PER_MS)))] += 1
        lost += ours - got
    deliveries = sum(histogram)
    return {
        "p50_ms": histogram_percentile(histogram, deliveries, 0.50),
        "p99_ms": histogram_percentile(histogram, deliveries, 0.99),
        "max_ms": round(slowest * 1000, 1) if deliveries else None,
        "deliveries": deliveries,
        "lost_events": lost,
        "duplicates": duplicates,
    }


async def measure(
    urls: list[str],
    cookie: str,
    nats_url: str,
    subjects: list[str],
    pids: list[int],
    *,
    sockets: int,
    rate: int,
    seconds: int,
) -> dict:
    import nats
    import psutil

    started_connecting = time.perf_counter()
    opened, connect_failures = await open_sockets(urls, cookie, sockets)
    connect_s = time.perf_counter() - started_connecting
    window, cache = Window(), FrameCache()
    tallies = [Tally() for _ in opened]
    receivers = [
        asyncio.create_task(receive(socket, tally, window, cache))
        for (_, socket), tally in zip(opened, tallies, strict=True)
    ]

    client = await nats.connect(nats_url)
    js = client.jetstream(publish_async_max_pending=20_000)
    publisher = Publisher(subjects)
    # Warm-up (the workers' first frames, the database pools): every socket must see it through.
    await publisher.publish(js, WARMUP_EVENTS, rate)
    last_warmup = max(publisher.published, default=0)
    await wait_until(lambda: all(tally.last >= last_warmup for tally in tallies), DRAIN_SECONDS)
    events = rate * seconds
    window.base, window.size, window.open = last_warmup + 1, events + events // 10 + 1000, True
    publisher.published.clear()

    servers, me = [psutil.Process(pid) for pid in pids], psutil.Process()
    load_before = round(psutil.getloadavg()[0], 1)
    server_cpu, my_cpu, machine_cpu = [s.cpu_times() for s in servers], me.cpu_times(), psutil.cpu_times()
    started = time.perf_counter()
    elapsed = await publisher.publish(js, events, rate)
    wanted = len(publisher.published)
    drained = await wait_until(lambda: all(tally.events >= wanted for tally in tallies), DRAIN_SECONDS)
    measured = time.perf_counter() - started  # publishing and the drain after it
    worker_seconds = [cpu_seconds(before, s.cpu_times()) for before, s in zip(server_cpu, servers, strict=True)]
    cpu = {
        "server_cpu_pct": round(100 * sum(worker_seconds) / measured),  # 100 = one core
        "worker_cpu_pct": [round(100 * s / measured) for s in worker_seconds],
        "client_cpu_pct": round(100 * cpu_seconds(my_cpu, me.cpu_times()) / measured),
        "machine_cpu_pct": machine_pct(machine_cpu, psutil.cpu_times()),
        "load_before": load_before,
        "load_after": round(psutil.getloadavg()[0], 1),
    }

    closed = sum(task.done() for task in receivers)  # ended before the run did: the server closed them
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    await asyncio.gather(*(socket.close() for _, socket in opened), return_exceptions=True)
    await client.close()

    figures = delivery_figures(tallies, window, publisher.published)
    errors = sum(connect_failures.values()) + closed + figures["lost_events"] + figures["duplicates"] + publisher.failed
    return {
        **figures,
        "errors": errors,
        "connect_failures": sum(connect_failures.values()),
        "connect_failure_kinds": dict(connect_failures.most_common(5)),
        "closed_sockets": closed,
        "publish_failures": publisher.failed,
        "drained": drained,
        "events": wanted,
        "events_per_s": round(wanted / elapsed),
        "deliveries_per_s": round(figures["deliveries"] / measured),
        "sockets": len(opened),
        "sockets_per_worker": [sum(1 for worker, _ in opened if worker == w) for w in range(len(urls))],
        "connect_s": round(connect_s, 1),
        **cpu,
    }


def redis_url() -> str:
    """REDIS_URL, reachable; a clear exit otherwise (the point is the Redis channel layer)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        raise SystemExit(
            "load_sockets needs the Redis channel layer: set REDIS_URL, e.g.\n"
            "  REDIS_URL=redis://127.0.0.1:6379/0 make bench ARGS=load_sockets"
        )
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        raise SystemExit(f"load_sockets: Redis at {settings.REDIS_URL} does not answer: {error}") from error
    return settings.REDIS_URL


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(key)


LAYERS = (  # side by side in one run: the same load on one in-memory worker, then on Redis workers
    ("InMemoryChannelLayer", 1),
    ("RedisChannelLayer", None),  # None: the ``workers`` asked for
)


def run(sockets: int = SOCKETS, seconds: int = SECONDS, rate: int = RATE, workers: int = WORKERS) -> Iterator[dict]:
    url = redis_url()
    with bench_database():
        for layer, layer_workers in LAYERS:
            count = layer_workers or workers
            figures, leader = load_run(sockets, seconds, rate, count, redis=url if layer == "RedisChannelLayer" else "")
            yield {
                "figure": "load_sockets",
                **figures,
                "rate_per_s": rate,
                "seconds": seconds,
                "workers": count,
                "leading_worker": leader,
                "channel_layer": layer,
                "machine": f"{machine()}: {count} uvicorn worker(s) with in-process bridges (one leads), "
                "PostgreSQL, NATS, Redis and this client share them",
                "target": {"errors": 0, "p99_ms": 150},
            }


def load_run(sockets: int, seconds: int, rate: int, workers: int, *, redis: str) -> tuple[dict, int]:
    """One measured load on ``workers`` fresh workers, on Redis at ``redis`` or (``""``) in memory:
    the figures and the index of the worker whose bridge led."""
    from django.contrib.sessions.backends.db import SessionStore

    from agents.models import Agent
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.live.bridge import delete_consumers
    from mistersmith.live.leader import leader_pids
    from mistersmith.live.models import BridgePosition

    nats = nats_url()
    connection().client()  # the streams exist
    tag = uuid.uuid4().hex[:8]
    prefix, layer_prefix = f"bench-load-{tag}", f"bench-load-{tag}:"
    agents = Agent.objects.bulk_create(Agent(name=f"{prefix}-{i}", status="Idle") for i in range(AGENTS))
    user, cookie = staff_cookie(prefix)
    # A bridge of a new prefix starts at the streams' present (no catch-up of what earlier runs left),
    # and one staff user holds every socket of the run.
    env = {"REDIS_URL": redis, "CHANNEL_LAYER_PREFIX": layer_prefix, "MISTERSMITH_BRIDGE_CATCH_UP": "0"}
    env["LIVE_SOCKETS_PER_USER"] = str(sockets + 50)
    ports, servers = [free_port() for _ in range(workers)], []
    try:
        for port in ports:
            servers.append(start_server(port, prefix, **env))
        wait_for(lambda: len(leader_pids(prefix)) == 1, 30, "one leading bridge")
        leader = [server.pid for server in servers].index(leader_pids(prefix)[0])
        figures = asyncio.run(
            measure(
                [f"ws://127.0.0.1:{port}/ws/live/" for port in ports],
                cookie,
                nats,
                [f"agent.{agent.pk}.events" for agent in agents],
                [server.pid for server in servers],
                sockets=sockets,
                rate=rate,
                seconds=seconds,
            )
        )
    finally:
        leading = leader_pids(prefix)  # stopped last, so that no standby takes over on the way out
        for server in sorted(servers, key=lambda server: server.pid in leading):
            stop_server(server)
        delete_consumers(prefix)
        if redis:
            delete_redis_keys(redis, layer_prefix)
        BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
        Agent.objects.filter(pk__in=[agent.pk for agent in agents]).delete()
        SessionStore(cookie.split("=", 1)[1]).delete()
        user.delete()
    return figures, leader
