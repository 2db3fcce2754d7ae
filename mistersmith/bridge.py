"""The bridge: the console's one consumer of the runtime's streams.

It pulls from JetStream with durable consumers, validates each message and applies it to the
console's state, acking only after the change is committed; a redelivered message changes
nothing twice (answers are applied once, by id). A message that fails validation is acked and
counted by reason, never retried forever and never allowed to stop the bridge.

Today it handles the restart protocol on ``system.control`` (RestartCompleted answers, and the
time-outs of restarts nobody answered).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mistersmith.messages import InvalidMessage, decode_json
from mistersmith.nats import nats_url
from mistersmith.streams import ensure_streams
from supervision import services
from supervision.events import CONTROL_SUBJECT, control_variant, parse_restart_completed

logger = logging.getLogger(__name__)
T = TypeVar("T")

CONTROL_CONSUMER = "mistersmith-console-control"
BATCH = 100
SWEEP_INTERVAL_SECONDS = 1.0


@dataclass
class BridgeStats:
    processed: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)


def database_work(function: Callable[..., T]) -> Callable[..., T]:
    """Run ``function`` as a unit of database work on a worker thread, like a request: the
    thread's connection goes back to the pool afterwards instead of staying checked out."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return wrapper


@database_work
def _apply_control(data: bytes, stats: BridgeStats) -> None:
    """Apply one system.control message (runs in a thread: it touches the database)."""
    try:
        name, body = control_variant(decode_json(data))
        if name != "RestartCompleted":
            stats.processed[f"ignored:{name}"] += 1
            return
        outcome = services.complete_restart(parse_restart_completed(body))
    except InvalidMessage as error:
        stats.rejected[error.reason] += 1
        logger.warning("system.control message rejected: %s", error)
        return
    stats.processed[f"restart_{outcome}"] += 1
    if outcome == "unknown":
        logger.warning("RestartCompleted for an unknown restart: %s", body.get("restart_id"))


@database_work
def _sweep() -> int:
    return services.expire_overdue_restarts()


async def run_bridge(
    stop: asyncio.Event,
    *,
    url: str | None = None,
    stats: BridgeStats | None = None,
    consumer: str = CONTROL_CONSUMER,
    ready: asyncio.Event | None = None,
) -> BridgeStats:
    """Consume until ``stop`` is set; reconnects by itself while NATS is away.

    ``ready`` is set once the durable consumer exists, so a caller can publish knowing the
    bridge will see it.
    """
    stats = stats or BridgeStats()
    client = await nats.connect(url or nats_url(), name="mistersmith-bridge", max_reconnect_attempts=-1)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        subscription = await js.pull_subscribe(
            CONTROL_SUBJECT,
            durable=consumer,
            stream="SYSTEM_EVENTS",
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=3,
                max_ack_pending=1000,
                deliver_policy=DeliverPolicy.NEW,
            ),
        )
        if ready is not None:
            ready.set()
        apply = sync_to_async(_apply_control, thread_sensitive=False)
        sweep = sync_to_async(_sweep, thread_sensitive=False)
        next_sweep = 0.0
        while not stop.is_set():
            try:
                messages = await subscription.fetch(BATCH, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                messages = []
            for message in messages:
                await apply(message.data, stats)
                await message.ack()
            if time.monotonic() >= next_sweep:
                expired = await sweep()
                if expired:
                    stats.processed["restart_timed_out"] += expired
                next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
    finally:
        await client.close()
    return stats


class BridgeThread(threading.Thread):
    """The bridge on a thread of its own, for a single-process install (`manage.py run`)."""

    def __init__(self, *, consumer: str = CONTROL_CONSUMER, url: str | None = None) -> None:
        super().__init__(name="bridge", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.ready = threading.Event()
        self.stats = BridgeStats()
        self.consumer = consumer
        self.url = url

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            try:
                self.loop.run_until_complete(self._run())
                return
            except Exception:
                if self.stop_event.is_set():
                    return
                logger.exception("bridge stopped by an error; starting again in 1 s")
                time.sleep(1)

    async def _run(self) -> None:
        ready = asyncio.Event()
        ready_waiter = asyncio.ensure_future(ready.wait())
        ready_waiter.add_done_callback(lambda _: self.ready.set())
        await run_bridge(self.stop_event, url=self.url, stats=self.stats, consumer=self.consumer, ready=ready)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(10)
