"""Bridge memory: the RSS of a ``manage.py bridge`` process that has consumed 1,000,000 agent events.

The bridge runs as a process of its own on the bench database with durable consumers of its own
prefix (so it reads only what is published after they exist; they are deleted at the end). This
process publishes the events with ``publish_async`` (at most ``WINDOW`` unacknowledged): heartbeats
of ``AGENTS`` agents, one in a hundred a state change, one in two hundred an Output of one of a few
agents. Done is when the bridge's AGENT_EVENTS consumer has nothing pending and nothing unacked.
RSS is sampled every 0.5 s from the bridge's start. Target: under 200 MB.

AGENT_EVENTS keeps at most 1,000,000 messages (1 GiB) and is shared: a run pushes older messages
of that stream out of it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.support import bench_database, bridge_consumers_exist, machine, service_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 1_000_000
AGENTS = 100
OUTPUT_AGENTS = 5
WINDOW = 5_000
SAMPLE_SECONDS = 0.5
MB = 1024 * 1024


class RssSampler(threading.Thread):
    """The resident set size of a process every SAMPLE_SECONDS, until stopped; with ``children``,
    of the process and its children together (a bridge catching up reads in a child process)."""

    def __init__(self, pid: int, *, children: bool = False) -> None:
        import psutil

        super().__init__(name="rss-sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.children = children
        self.samples: list[int] = [self.rss()]
        self.halt = threading.Event()

    def rss(self) -> int:
        import psutil

        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True) if self.children else []:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def run(self) -> None:
        import psutil

        while not self.halt.wait(SAMPLE_SECONDS):
            try:
                self.samples.append(self.rss())
            except psutil.Error:
                return

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def events_for(subjects: list[str], count: int) -> Iterator[tuple[str, bytes]]:
    """Mostly heartbeats; every 100th a state change (Idle <-> Processing), every 200th an Output."""
    states: dict[str, str] = {}
    for index in range(count):
        if index % 200 == 150:
            subject = subjects[index % OUTPUT_AGENTS]
            agent = subject.split(".")[1]
            body = {"Output": {"agent_id": agent, "content": f"line {index}: " + "output of the agent " * 8}}
        else:
            subject = subjects[index % len(subjects)]
            agent = subject.split(".")[1]
            if index % 100 == 99:
                old = states.get(agent, "Idle")
                states[agent] = new = "Processing" if old == "Idle" else "Idle"
                body = {"StateChanged": {"agent_id": agent, "old_state": old, "new_state": new}}
            else:
                now = time.time_ns()
                stamp = {"secs_since_epoch": now // 1_000_000_000, "nanos_since_epoch": now % 1_000_000_000}
                body = {"Heartbeat": {"agent_id": agent, "timestamp": stamp}}
        yield subject, json.dumps(body).encode()


async def publish(url: str, subjects: list[str], count: int) -> tuple[float, int]:
    """Publish ``count`` events, at most WINDOW awaiting their ack; return (seconds, failures)."""
    import nats

    failures = 0

    def acked(future: asyncio.Future) -> None:
        nonlocal failures
        if future.cancelled() or future.exception() is not None:
            failures += 1

    client = await nats.connect(url)
    js = client.jetstream(publish_async_max_pending=WINDOW)
    started = time.perf_counter()
    for subject, data in events_for(subjects, count):
        # no wait_stall: it wraps every publish in asyncio.wait_for, which costs more than the publish
        (await js.publish_async(subject, data)).add_done_callback(acked)
    await asyncio.wait_for(js.publish_async_completed(), 60)
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, failures


def alive(process: subprocess.Popen) -> bool:
    """True while the bridge runs; a bridge that stopped ends the benchmark at once."""
    if process.poll() is not None:
        raise RuntimeError(f"the bridge exited with status {process.returncode}")
    return True


def consumed(prefix: str) -> bool:
    """The bridge's AGENT_EVENTS consumer has delivered everything, and had all of it acked."""
    from mistersmith.jetstream.client import connection

    client = connection()
    info = client.run(client.client().jetstream().consumer_info("AGENT_EVENTS", f"{prefix}-agents"))
    return info.num_pending == 0 and info.num_ack_pending == 0


def run(events: int = EVENTS) -> Iterator[dict]:
    from django.conf import settings

    from agents.models import Agent
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.live.bridge import delete_consumers
    from mistersmith.live.models import BridgePosition

    with bench_database():
        url = nats_url()
        connection().client()  # the streams exist
        tag = uuid.uuid4().hex[:8]
        agents = Agent.objects.bulk_create(Agent(name=f"bench-memory-{tag}-{i}", status="Idle") for i in range(AGENTS))
        subjects = [f"agent.{agent.pk}.events" for agent in agents]
        prefix = f"bench-memory-{tag}"
        bridge = subprocess.Popen(
            [sys.executable, "manage.py", "bridge"],
            cwd=ROOT,
            env=service_env(MISTERSMITH_BRIDGE_PREFIX=prefix),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        sampler = None
        try:
            wait_for(lambda: alive(bridge) and bridge_consumers_exist(prefix), 60, "the bridge's consumers")
            sampler = RssSampler(bridge.pid)
            sampler.start()
            started = time.perf_counter()
            publish_seconds, failures = asyncio.run(asyncio.wait_for(publish(url, subjects, events), 1800))
            wait_for(lambda: alive(bridge) and consumed(prefix), 1800, "the bridge to consume every event", 0.2)
            elapsed = time.perf_counter() - started
            final = sampler.process.memory_info().rss
            sampler.stop()
        finally:
            if sampler is not None:
                sampler.stop()
            bridge.send_signal(signal.SIGINT)
            try:
                output, _ = bridge.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                bridge.kill()
                output, _ = bridge.communicate(timeout=10)
            delete_consumers(prefix)
            BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").delete()
            Agent.objects.filter(pk__in=[agent.pk for agent in agents]).delete()
        stopped = re.search(r"processed (\{.*?\})", output or "")
        yield {
            "figure": "bridge_memory",
            "events": events,
            "start_rss_mb": round(sampler.samples[0] / MB, 1),
            "peak_rss_mb": round(max(*sampler.samples, final) / MB, 1),
            "final_rss_mb": round(final / MB, 1),
            "rss_samples": len(sampler.samples),
            "events_per_s": round(events / elapsed),
            "elapsed_s": round(elapsed, 1),
            "publish_s": round(publish_seconds, 1),
            "publish_failures": failures,
            "bridge_processed": ast.literal_eval(stopped.group(1)) if stopped else None,
            "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1],
            "machine": f"{machine()}: bridge, PostgreSQL, NATS and the publisher share them",
            "target": {"peak_rss_mb": 200, "final_rss_mb": 200},
        }
