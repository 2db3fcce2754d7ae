"""Restart request to the RestartNode command seen by a NATS subscriber: p50 and p99 over 1,000.

Each request goes through the whole service (plan under row locks, restart row, JetStream
publish with ack, commit); a core NATS subscriber on ``system.control`` marks the arrival.
Target (issue 3): p99 under 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

from bench.support import bench_database

RESTARTS = 1000


class Arrivals:
    """Arrival times of RestartNode commands, by restart id, from a subscriber on its own loop."""

    def __init__(self, url: str) -> None:
        self.times: dict[str, float] = {}
        self.seen = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._subscribe(url), self.loop).result(10)

    async def _subscribe(self, url: str) -> None:
        import nats

        self.client = await nats.connect(url)

        async def on_message(message) -> None:
            arrived = time.perf_counter()
            payload = json.loads(message.data).get("payload", {})
            if "RestartNode" in payload:
                with self.seen:
                    self.times[payload["RestartNode"]["restart_id"]] = arrived
                    self.seen.notify_all()

        await self.client.subscribe("system.control", cb=on_message)
        await self.client.flush()

    def wait_for(self, restart_id: str, timeout: float = 5.0) -> float:
        with self.seen:
            if not self.seen.wait_for(lambda: restart_id in self.times, timeout):
                raise RuntimeError(f"command for {restart_id} never arrived")
            return self.times[restart_id]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def make_nodes(prefix: str, count: int) -> list:
    from supervision.models import SupervisionNode, SupervisionPolicy

    nodes = SupervisionNode.objects.bulk_create(
        SupervisionNode(node_id=f"{prefix}-{i:05d}", node_type="Service", node_type_detail="bench")
        for i in range(count)
    )
    SupervisionPolicy.objects.bulk_create(SupervisionPolicy(node=n, max_restarts=5) for n in nodes)
    return nodes


def run() -> Iterator[dict]:
    from django.contrib.auth import get_user_model

    from mistersmith.jetstream import client as nats
    from supervision import services

    with bench_database():
        user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
        prefix = f"bench-restart-{uuid.uuid4().hex[:6]}"
        nodes = make_nodes(prefix, RESTARTS)
        arrivals = Arrivals(nats.nats_url())
        nats.connection().client()  # connect (and ensure streams) before timing
        latencies = []
        try:
            for node in nodes:
                started = time.perf_counter()
                outcome = services.request_restart(node.pk, user=user, reason="bench")
                arrived = arrivals.wait_for(str(outcome.restarts[0].pk))
                latencies.append((arrived - started) * 1000)
        finally:
            arrivals.close()
            type(nodes[0]).objects.filter(node_id__startswith=prefix).delete()  # the database cascades
    latencies.sort()
    yield {
        "figure": "restart_request_to_command",
        "restarts": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "target": {"p99_ms": 50},
    }
