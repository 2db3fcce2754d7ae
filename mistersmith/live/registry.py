"""The feed registry: what the apps give the live path, so that the live floor imports no app.

Each app says in its ``feeds.py`` (imported by the live app's ``ready()``, like ``admin.py``) which
streams it applies (:class:`Feed`, with its handler), what the bridge's sweep must do for it
(:func:`register_sweep`), which stream positions its tables reflect (:func:`register_position`)
and how a live socket filters one of its topics (:func:`register_topic_filter`). The bridge
(mistersmith/live/bridge.py) keeps the generic loop: fetch, apply and commit, frame, ack.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mistersmith.jetstream.messages import InvalidMessage
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.models import DeadLetter

logger = logging.getLogger("mistersmith.live.bridge")  # the bridge's own lines, wherever its feeds live

Batch = list[tuple[int, str, bytes]]  # (stream sequence, subject, data)


@dataclass
class BridgeStats:
    processed: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)


def reject(stream: str, item: tuple[int, str, bytes], error: InvalidMessage) -> str:
    """Keep a refused message in the dead-letter list; the caller counts it once that is committed."""
    sequence, subject, data = item
    DeadLetter.record(
        stream=stream, subject=subject, sequence=sequence, reason=error.reason, error=str(error), data=data
    )
    logger.warning("%s #%s rejected: %s", subject, sequence, error)
    return error.reason


@dataclass(frozen=True)
class Feed:
    """One durable consumer of the bridge and what applies its batches."""

    suffix: str
    stream: str
    apply: Callable[[Batch, BridgeStats, str, FrameBuffer], None]
    keeps_position: bool = False  # a BridgePosition row, committed with each batch (and a framed position)
    # Where the feed stands among the others (the bridge starts, and the pages list, them in this order).
    order: int = 100
    # Called, in the transaction that sets the position back to 0, when the stream was made again.
    stream_started_over: Callable[[], None] | None = None

    def consumer_name(self, prefix: str) -> str:
        """The feed's durable consumer for a bridge of ``prefix`` (MISTERSMITH_BRIDGE_PREFIX)."""
        return f"{prefix}-{self.suffix}"


class TopicFilter(Protocol):
    def matches(self, event: Any) -> bool: ...


# Filled by the apps' feeds.py when the apps are ready; the same list objects for every importer.
FEEDS: list[Feed] = []
SWEEPS: list[tuple[str, Callable[[], int]]] = []  # (the processed counter it adds to, the sweep)
POSITIONS: dict[str, Callable[[], int | None]] = {}  # stream -> its newest sequence in the app's tables
TOPIC_FILTERS: dict[str, Callable[[Mapping[str, str]], TopicFilter]] = {}  # topic -> filter from its fields


def register_feed(feed: Feed) -> None:
    """Add ``feed`` to the bridge (once per consumer suffix)."""
    if any(known.suffix == feed.suffix for known in FEEDS):
        return
    FEEDS.append(feed)
    FEEDS.sort(key=lambda known: known.order)


def register_sweep(counter: str, sweep: Callable[[], int]) -> None:
    """Run ``sweep`` with the bridge's periodic sweep; what it returns is counted under ``counter``."""
    if (counter, sweep) not in SWEEPS:
        SWEEPS.append((counter, sweep))


def register_position(stream: str, newest: Callable[[], int | None]) -> None:
    """The last sequence of ``stream`` the app's tables reflect, for the pages' snapshots (when the
    feed keeps no BridgePosition row)."""
    POSITIONS[stream] = newest


def register_topic_filter(topic: str, make: Callable[[Mapping[str, str]], TopicFilter]) -> None:
    """A live socket may send fields for ``topic`` (``"filters"``); ``make`` turns them into a filter
    (ValueError for bad fields) whose ``matches(event)`` says which of the topic's events it is sent."""
    TOPIC_FILTERS[topic] = make
