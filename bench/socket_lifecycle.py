"""Live sockets that end, and a stop that ends (issue 16): one console worker as ``manage.py run``
serves it (``python -m mistersmith.live.server``, the bridge in process), this process publishing agent
events at ``RATE``/s with bench/live_latency.py's publisher.

- ``socket_lifecycle_cycles`` (Redis layer): ``CYCLES`` sockets, ``AT_ONCE`` at a time, each opened,
  subscribed to ``events``, given one frame, and closed normally by the client, while the events
  flow. Then the consumer tasks still running on the worker (``mistersmith_live_consumers_running``
  on /metrics) once it reaches 0 or ``SETTLE_SECONDS`` passed: the leaked consumers (target 0).
- ``socket_lifecycle_stop`` (each layer): ``SOCKETS`` sockets on ``events`` while the events flow,
  then SIGTERM: the seconds until the process has exited (target: within
  ``MISTERSMITH_STOP_TIMEOUT``, 10 s), its exit code, and the close codes the clients saw (1001).
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
from collections import Counter
from collections.abc import Iterator

from bench.live_latency import AGENTS, ROOT, Publisher, staff_cookie
from bench.sockets import subscribed_socket
from bench.support import bench_database, bridge_consumers_exist, free_port, machine, service_env, wait_for

RATE = 500  # events/s
CYCLES = 1000
WHERE = "one worker with its bridge in process, PostgreSQL, NATS, Redis and this client share them"
AT_ONCE = 20
SOCKETS = 100
SETTLE_SECONDS = 30
STOP_TIMEOUT = 10.0


def start_worker(port: int, prefix: str, **env: str) -> subprocess.Popen:
    env.update(MISTERSMITH_BRIDGE_IN_PROCESS="1", MISTERSMITH_BRIDGE_PREFIX=prefix, LIVE_SOCKETS_PER_USER="1000")
    command = [sys.executable, "-m", "mistersmith.live.server", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=service_env(**env), stdin=subprocess.DEVNULL)
    try:
        serving = lambda: process.poll() is None and gauge(port, "mistersmith_live_sockets_open") is not None  # noqa: E731
        wait_for(serving, 60, "server")
        wait_for(lambda: bridge_consumers_exist(prefix), 30, "the bridge's consumers")
    except BaseException:
        process.kill()
        raise
    return process


def gauge(port: int, name: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return None


class Load:
    """Publishes at ``rate``/s, in rounds of a tenth of a second, until stopped (by a flag: nats-py
    waits for acks under asyncio.wait_for, which on Python 3.11 may swallow a cancellation)."""

    def __init__(self, nats_url: str, subjects: list[str], rate: int) -> None:
        self.nats_url, self.publisher, self.rate = nats_url, Publisher(subjects), rate
        self.stopping = False
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        import nats

        client = await nats.connect(self.nats_url)
        try:
            js = client.jetstream()
            while not self.stopping:
                await self.publisher.publish(js, max(1, self.rate // 10), self.rate)
                self.publisher.published.clear()
        finally:
            await client.close()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=15)


async def open_socket(port: int, cookie: str) -> object:
    return await subscribed_socket(f"http://127.0.0.1:{port}", cookie, ["events"], ping_interval=None)


async def open_close_cycles(port: int, cookie: str, load: Load, count: int) -> dict:
    done, failed = 0, 0

    async def one() -> None:
        nonlocal done, failed
        try:
            socket = await open_socket(port, cookie)
            while json.loads(await asyncio.wait_for(socket.recv(), 30)).get("topic") != "events":
                pass
            await socket.close()
            done += 1
        except Exception:
            failed += 1

    load.start()
    started = time.perf_counter()
    try:
        for first in range(0, count, AT_ONCE):
            await asyncio.gather(*(one() for _ in range(min(AT_ONCE, count - first))))
        elapsed = time.perf_counter() - started
        settle_start = time.perf_counter()
        running = await asyncio.to_thread(gauge, port, "mistersmith_live_consumers_running")
        while running != 0 and time.perf_counter() - settle_start < SETTLE_SECONDS:
            await asyncio.sleep(0.5)
            running = await asyncio.to_thread(gauge, port, "mistersmith_live_consumers_running")
        settled = time.perf_counter() - settle_start
    finally:
        await load.stop()
    return {
        "cycles": done,
        "failed_cycles": failed,
        "cycles_seconds": round(elapsed, 1),
        "leaked_consumers": running,
        "seconds_to_zero": round(settled, 1) if running == 0 else None,
    }


async def stop_under_load(process: subprocess.Popen, port: int, cookie: str, load: Load, count: int) -> dict:
    from websockets.exceptions import ConnectionClosed

    sockets = [await open_socket(port, cookie) for _ in range(count)]
    codes: Counter = Counter()

    async def read(socket) -> None:
        try:
            async for _ in socket:
                pass
        except ConnectionClosed:
            pass
        codes[socket.close_code] += 1

    readers = [asyncio.create_task(read(socket)) for socket in sockets]
    load.start()
    try:
        await asyncio.sleep(3)  # the load runs a while before the stop: part of the scenario, not a wait
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(process.wait, 60)
        seconds = time.perf_counter() - stopping
        await asyncio.wait(readers, timeout=15)
    finally:
        await load.stop()
    return {
        "sockets": count,
        "stop_seconds": round(seconds, 2),
        "exit_code": returncode,
        "close_codes": {str(code): n for code, n in sorted(codes.items(), key=lambda item: str(item[0]))},
    }


def run(sockets: int = SOCKETS, rate: int = RATE, cycles: int = CYCLES) -> Iterator[dict]:
    from django.conf import settings
    from django.contrib.auth.models import Permission
    from django.contrib.sessions.backends.db import SessionStore

    from agents.models import Agent
    from bench.load_sockets import delete_redis_keys, redis_url
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.live.bridge import delete_consumers
    from mistersmith.live.models import BridgePosition

    url = redis_url()
    with bench_database():
        nats = nats_url()
        connection().client()
        tag = uuid.uuid4().hex[:8]
        agents = Agent.objects.bulk_create(Agent(name=f"bench-life-{tag}-{i}", status="Idle") for i in range(AGENTS))
        subjects = [f"agent.{agent.pk}.events" for agent in agents]
        user, cookie = staff_cookie(f"bench-life-{tag}")
        user.user_permissions.add(Permission.objects.get(codename="view_event_log"))
        prefixes = []
        try:
            for layer in ("redis", "in-memory"):
                prefix = f"bench-life-{tag}-{layer}"
                prefixes.append(prefix)
                port = free_port()
                env = {"REDIS_URL": url, "CHANNEL_LAYER_PREFIX": prefix} if layer == "redis" else {"REDIS_URL": ""}
                process = start_worker(port, prefix, **env)
                try:
                    if layer == "redis":
                        figures = asyncio.run(open_close_cycles(port, cookie, Load(nats, subjects, rate), cycles))
                        yield {
                            "figure": "socket_lifecycle_cycles",
                            **figures,
                            "rate_per_s": rate,
                            "at_once": AT_ONCE,
                            "channel_layer": "RedisChannelLayer",
                            "machine": f"{machine()}: {WHERE}",
                            "target": {"leaked_consumers": 0},
                        }
                    figures = asyncio.run(stop_under_load(process, port, cookie, Load(nats, subjects, rate), sockets))
                    yield {
                        "figure": "socket_lifecycle_stop",
                        **figures,
                        "rate_per_s": rate,
                        "channel_layer": "RedisChannelLayer" if layer == "redis" else "InMemoryChannelLayer",
                        "stop_timeout_s": settings.STOP_TIMEOUT_SECONDS,
                        "machine": f"{machine()}: {WHERE}",
                        "target": {"stop_seconds": f"< {settings.STOP_TIMEOUT_SECONDS:g}", "close_codes": "1001"},
                    }
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait(10)
        finally:
            for prefix in prefixes:
                delete_consumers(prefix)
                BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
            delete_redis_keys(url, f"bench-life-{tag}")
            Agent.objects.filter(pk__in=[agent.pk for agent in agents]).delete()
            SessionStore(cookie.split("=", 1)[1]).delete()
            user.delete()
