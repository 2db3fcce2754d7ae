"""How far each bridge feed's data is behind its stream's head, read from NATS alone.

Any worker can answer (nothing is kept in process but a one-second cache): a feed's durable
consumer says how many messages it has not yet acked (``num_pending`` never delivered plus
``num_ack_pending`` delivered but not acked), and its ack floor (or, with nothing unacked, its
last delivery) says where the oldest of them starts; that message's stream time, against now,
is how many seconds the feed is behind. A feed is "stale" when that age passes a threshold
(``MISTERSMITH_STALE_SECONDS``, default 30 s): its pages show data older than that while newer
data waits in the stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.errors import NotFoundError

from mistersmith.jetstream.settings_number import number_setting

DEFAULT_STALE_SECONDS = 30.0
CACHE_SECONDS = 1.0


def stale_seconds() -> float:
    """``MISTERSMITH_STALE_SECONDS`` (Django setting or environment), default 30; at least 0."""
    return number_setting("MISTERSMITH_STALE_SECONDS", default=DEFAULT_STALE_SECONDS, minimum=0.0)


@dataclass(frozen=True)
class FeedRef:
    """A bridge feed as NATS knows it: its name, its stream and its durable consumer."""

    name: str
    stream: str
    consumer: str


@dataclass(frozen=True)
class FeedLag:
    """One feed's distance from its stream's head."""

    feed: str
    stream: str
    consumer: str
    consumer_exists: bool
    messages_behind: int
    seconds_behind: float
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}

    @property
    def text(self) -> str:
        """ "up to date", "3 messages, 2 s behind" or "stale: 120 s behind"."""
        if self.messages_behind == 0:
            return "up to date"
        seconds = f"{self.seconds_behind:.0f} s behind"
        if self.stale:
            return f"stale: {seconds}"
        unit = "message" if self.messages_behind == 1 else "messages"
        return f"{self.messages_behind:,} {unit}, {seconds}"


async def _time_of_first_at_or_after(js: Any, stream: str, sequence: int) -> dt.datetime | None:
    """The stream time of the first message at or after ``sequence`` (None: there is none)."""
    try:
        return (await js.get_msg(stream, seq=max(1, sequence), subject=">", next=True)).time
    except NotFoundError:
        return None


async def feed_lag(js: Any, feed: FeedRef, *, now: dt.datetime, stale_after: float) -> FeedLag:
    """A feed's lag. A consumer that does not exist (the bridge never ran with this prefix, or its
    consumer was deleted) is behind by everything its stream holds."""
    try:
        info = await js.consumer_info(feed.stream, feed.consumer)
    except NotFoundError:
        info = None
    if info is not None:
        behind = (info.num_pending or 0) + (info.num_ack_pending or 0)
        acked = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        # Unacked deliveries: the oldest lies after the ack floor. None: after the last delivered
        # (a consumer made with DeliverPolicy.NEW starts past the stream's history, floor 0).
        start = (acked if info.num_ack_pending else max(acked, delivered)) + 1
    else:
        try:
            state = (await js.stream_info(feed.stream)).state
        except NotFoundError:
            state = None
        behind = state.messages if state else 0
        start = state.first_seq if state else 1
    oldest = await _time_of_first_at_or_after(js, feed.stream, start) if behind else None
    seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return FeedLag(
        feed=feed.name,
        stream=feed.stream,
        consumer=feed.consumer,
        consumer_exists=info is not None,
        messages_behind=behind,
        seconds_behind=round(seconds, 1),
        stale=behind > 0 and seconds > stale_after,
    )


async def feeds_lag(js: Any, feeds: Iterable[FeedRef], *, stale_after: float) -> list[FeedLag]:
    """Every feed's lag, read at the same time (one round of JetStream API requests)."""
    now = dt.datetime.now(dt.UTC)
    return list(await asyncio.gather(*(feed_lag(js, feed, now=now, stale_after=stale_after) for feed in feeds)))


def summary(lags: list[FeedLag]) -> dict[str, Any]:
    """The page badge's figures: the worst feed decides (stale first, then seconds, then messages)."""
    worst = max(lags, key=lambda lag: (lag.stale, lag.seconds_behind, lag.messages_behind), default=None)
    return {
        "stale": any(lag.stale for lag in lags),
        "messages_behind": sum(lag.messages_behind for lag in lags),
        "seconds_behind": worst.seconds_behind if worst else 0.0,
        "text": worst.text if worst else "up to date",
    }


class FreshnessCache:
    """The figures of the last read, kept ``CACHE_SECONDS``: pages of many viewers polling every
    few seconds cost NATS one round per second per process, not one per viewer."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, read: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is not None and time.monotonic() - found[0] < self.ttl:
                return found[1]
        value = read()  # outside the lock: a slow NATS never blocks readers of other keys
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = FreshnessCache()

__all__ = ["CACHE", "FeedLag", "FeedRef", "FreshnessCache", "feed_lag", "feeds_lag", "stale_seconds"]
