"""The live path end to end: an agent event published to AGENT_EVENTS until a browser's WebSocket has it.

The console runs as ``make run`` serves it: the real ASGI application under uvicorn in a process of
its own, the bridge on its event loop (``MISTERSMITH_BRIDGE_IN_PROCESS=1``, durable consumers of its
own prefix, deleted at the end), on the bench database. This process, separate from the server,
holds ``SOCKETS`` WebSockets of a staff user subscribed to ``agents`` (the busiest topic: every agent
event) and publishes ``RATE`` events/s for ``SECONDS`` s (heartbeats of a few agents, one event in
fifty a state change) with ``publish_async``, paced on a monotonic clock.

Latency, per socket per event: the time its frame arrived minus the time the event was handed to the
NATS client. The PubAck's stream sequence ties an event to its publish time; each event of a frame
carries its "sequence". Lost events: (event, socket) pairs published but never received.
Targets: p50 < 25 ms, p99 < 120 ms. The figures depend on the machine: server, bridge, PostgreSQL,
NATS and this client share its cores.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.support import (
    bench_database,
    bridge_consumers_exist,
    free_port,
    machine,
    percentile,
    service_env,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
RATE = 1000  # events/s
SECONDS = 20
SOCKETS = 50
AGENTS = 10
TICK_SECONDS = 0.005  # the publisher's pacing step: 5 events per step at 1,000/s
STATE_CHANGE_EVERY = 50
WARMUP_EVENTS = 200
DRAIN_SECONDS = 10  # after the last publish: how long sockets may take to receive the rest
BENCH_SOCKETS_PER_USER = 100_000  # the bench servers' per-user socket bound: one user holds them all


@dataclass
class Publisher:
    """Publishes agent events at a fixed rate and keeps, by stream sequence, when each was handed over."""

    subjects: list[str]
    states: dict[str, str] = field(default_factory=dict)  # agent id -> its state as the events say
    published: dict[int, float] = field(default_factory=dict)  # stream sequence -> perf_counter
    failed: int = 0
    count: int = 0

    def payload(self) -> tuple[str, bytes]:
        subject = self.subjects[self.count % len(self.subjects)]
        agent = subject.split(".")[1]
        if self.count % STATE_CHANGE_EVERY == STATE_CHANGE_EVERY - 1:
            old = self.states.get(agent, "Idle")
            new = "Processing" if old == "Idle" else "Idle"
            self.states[agent] = new
            body = {"StateChanged": {"agent_id": agent, "old_state": old, "new_state": new}}
        else:
            now = time.time_ns()
            stamp = {"secs_since_epoch": now // 1_000_000_000, "nanos_since_epoch": now % 1_000_000_000}
            body = {"Heartbeat": {"agent_id": agent, "timestamp": stamp}}
        self.count += 1
        return subject, json.dumps(body).encode()

    def _acked(self, started: float, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed += 1
        else:
            self.published[future.result().seq] = started

    async def publish(self, js, events: int, rate: int) -> float:
        """Publish ``events`` at ``rate``/s; return the seconds it took (acks included)."""
        start = time.perf_counter()
        sent = 0
        while sent < events:
            due = min(events, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                subject, data = self.payload()
                handed = time.perf_counter()
                future = await js.publish_async(subject, data)
                future.add_done_callback(lambda f, t=handed: self._acked(t, f))
                sent += 1
            await asyncio.sleep(TICK_SECONDS)
        await asyncio.wait_for(js.publish_async_completed(), 30)
        return time.perf_counter() - start


async def _receive(socket, arrivals: dict[int, float]) -> None:
    """Note when each AGENT_EVENTS sequence first arrived on this socket."""
    async for text in socket:
        arrived = time.perf_counter()
        frame = json.loads(text)
        if frame.get("topic") != "agents":
            continue
        for event in frame["events"]:
            if event.get("stream") == "AGENT_EVENTS":
                arrivals.setdefault(event["sequence"], arrived)


async def _wait_received(arrivals: list[dict[int, float]], wanted: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(wanted <= received.keys() for received in arrivals):
            return
        await asyncio.sleep(0.05)


async def measure(ws_url: str, cookie: str, url: str, subjects: list[str], server_pid: int) -> dict:
    import nats
    import psutil
    from websockets.asyncio.client import connect

    origin = ws_url.replace("ws://", "http://").split("/ws/")[0]
    sockets = []
    for _ in range(SOCKETS):
        socket = await connect(ws_url, origin=origin, additional_headers={"Cookie": cookie}, max_size=2**24)
        await socket.send(json.dumps({"subscribe": ["agents"]}))
        reply = json.loads(await socket.recv())
        if reply.get("subscribed") != ["agents"]:
            raise RuntimeError(f"subscription refused: {reply}")
        sockets.append(socket)
    arrivals: list[dict[int, float]] = [{} for _ in sockets]
    receivers = [asyncio.create_task(_receive(s, a)) for s, a in zip(sockets, arrivals, strict=True)]

    client = await nats.connect(url)
    js = client.jetstream(publish_async_max_pending=20_000)
    publisher = Publisher(subjects)
    # Warm-up (first database connections, first frames): not measured.
    await publisher.publish(js, WARMUP_EVENTS, RATE)
    await _wait_received(arrivals, set(publisher.published), DRAIN_SECONDS)
    publisher.published.clear()
    for received in arrivals:
        received.clear()

    server, me = psutil.Process(server_pid), psutil.Process()
    load_before = round(psutil.getloadavg()[0], 1)
    server_cpu, my_cpu, machine_cpu = server.cpu_times(), me.cpu_times(), psutil.cpu_times()
    started = time.perf_counter()
    elapsed = await publisher.publish(js, RATE * SECONDS, RATE)
    wanted = set(publisher.published)
    await _wait_received(arrivals, wanted, DRAIN_SECONDS)
    window = time.perf_counter() - started  # publishing and the drain after it
    server_seconds = cpu_seconds(server_cpu, server.cpu_times())
    cpu = {
        "server_cpu_pct": round(100 * server_seconds / window),
        "client_cpu_pct": round(100 * cpu_seconds(my_cpu, me.cpu_times()) / window),
        "machine_cpu_pct": machine_pct(machine_cpu, psutil.cpu_times()),
        "load_before": load_before,
    }

    for task in receivers:
        task.cancel()
    for socket in sockets:
        await socket.close()
    await client.close()

    latencies, lost = [], 0
    for received in arrivals:
        for sequence, handed in publisher.published.items():
            arrived = received.get(sequence)
            if arrived is None:
                lost += 1
            else:
                latencies.append((arrived - handed) * 1000)
    latencies.sort()
    return {
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "events": len(wanted),
        "events_per_s": round(len(wanted) / elapsed),
        "sockets": len(sockets),
        "deliveries": len(latencies),
        "lost_events": lost,
        "publish_failures": publisher.failed,
        # the server's CPU per (event, socket) delivered: what the fan-out costs, less sensitive than the
        # latency to other work on the machine (but it falls as frames grow when the server falls behind)
        "server_cpu_us_per_delivery": round(1e6 * server_seconds / max(1, len(latencies))),
        **cpu,
    }


def cpu_seconds(before, after) -> float:
    return (after.user - before.user) + (after.system - before.system)


def machine_pct(before, after) -> int:
    """Busy share of all cores over the interval (100 = every core busy)."""
    busy = (sum(after) - after.idle - after.iowait) - (sum(before) - before.idle - before.iowait)
    total = sum(after) - sum(before)
    return round(100 * busy / total) if total else 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(port: int, prefix: str | None, *, workers: int = 1, **env: str) -> subprocess.Popen:
    """The console's ASGI app under uvicorn on the bench database, with the bridge in process when a
    consumer ``prefix`` is given; ``workers`` > 1: uvicorn's own worker processes; ``env``: added.

    One bench user holds every socket of a run (50 here, 500 in load_sockets): the per-user bound
    (LIVE_SOCKETS_PER_USER, 20) would close the 21st with 4429, so it is lifted unless ``env`` sets it."""
    env.setdefault("LIVE_SOCKETS_PER_USER", str(BENCH_SOCKETS_PER_USER))
    if prefix:
        env.update(MISTERSMITH_BRIDGE_IN_PROCESS="1", MISTERSMITH_BRIDGE_PREFIX=prefix)
    command = [sys.executable, "-m", "uvicorn", "mistersmith.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--lifespan", "on", "--log-level", "warning"]
    command += ["--ws-per-message-deflate", "false"]  # as manage.py run serves it
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, cwd=ROOT, env=service_env(**env), stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: process.poll() is None and _answers(f"http://127.0.0.1:{port}/admin/login/"), 60, "server")
        if prefix:
            wait_for(lambda: bridge_consumers_exist(prefix), 30, "the bridge's consumers")
    except BaseException:
        process.kill()
        raise
    return process


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def staff_cookie(username: str) -> tuple[object, str]:
    """A staff user who may see agents, and the session cookie of a login of theirs."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    user = get_user_model().objects.create_user(username, password=uuid.uuid4().hex, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent", content_type__app_label="agents"))
    client = Client()
    client.force_login(user)
    return user, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def run() -> Iterator[dict]:
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    from agents.models import Agent
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.live.bridge import delete_consumers
    from mistersmith.live.models import BridgePosition

    with bench_database():
        url = nats_url()
        connection().client()  # the streams exist
        tag = uuid.uuid4().hex[:8]
        agents = Agent.objects.bulk_create(Agent(name=f"bench-live-{tag}-{i}", status="Idle") for i in range(AGENTS))
        user, cookie = staff_cookie(f"bench-live-{tag}")
        prefix = f"bench-live-{tag}"
        port = free_port()
        server = start_server(port, prefix)
        try:
            figures = asyncio.run(
                measure(
                    f"ws://127.0.0.1:{port}/ws/live/",
                    cookie,
                    url,
                    [f"agent.{agent.pk}.events" for agent in agents],
                    server.pid,
                )
            )
        finally:
            stop_server(server)
            delete_consumers(prefix)
            BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
            Agent.objects.filter(pk__in=[agent.pk for agent in agents]).delete()
            SessionStore(cookie.split("=", 1)[1]).delete()
            user.delete()
        layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
        yield {
            "figure": "live_latency",
            **figures,
            "rate_per_s": RATE,
            "seconds": SECONDS,
            "channel_layer": layer,
            "machine": f"{machine()}: uvicorn + in-process bridge, PostgreSQL, NATS and this client share them",
            "target": {"p50_ms": 25, "p99_ms": 120},
        }
