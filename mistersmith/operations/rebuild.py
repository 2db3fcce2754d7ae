"""Rebuilding the console's projections from the streams' retained history: the generic driver.

The projections are what the bridge derives from events: agent state, heartbeats, session
output and anomalies (AGENT_EVENTS) and the discovery store (DISCOVERIES). This module reads the
range, holds the bridge's position, decides where a replay may start, and reports; what a replay
does to an app's rows (the rewind rules) is the app's own: agents/rebuild.py.

- AGENT_EVENTS, range ``start``..``end``: one transaction that holds the bridge's position row
  (``<prefix>-agents``) locked: the live bridge's next batch waits instead of interleaving, and
  a failed rebuild leaves everything as it was. At the end the position is set to ``end`` (if
  the bridge was behind), so the bridge neither re-applies what the rebuild applied nor skips
  what it did not. A rebuild of some agents only (``agents=``) replays up to the bridge's
  position and leaves it.
- DISCOVERIES: the whole retained range, in one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from agents.rebuild import AGENTS_STREAM, DISCOVERIES_STREAM, AgentReplay, DiscoveryReplay, stream_started_over
from mistersmith.jetstream.history import read_range, stream_bounds
from mistersmith.live.models import BridgePosition
from mistersmith.live.positions import bridge_consumer_prefix

logger = logging.getLogger(__name__)

FEEDS = ("agents", "discoveries")
Progress = Callable[[str, int, int], None]  # (feed, messages read, messages in the range)


class RebuildRefused(ValueError):
    """The rebuild would leave the bridge skipping events; nothing was changed."""


@dataclass
class FeedReport:
    """What one feed's rebuild read and did."""

    stream: str
    start: int
    end: int
    messages: int = 0
    outcome: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


@dataclass
class RebuildReport:
    feeds: list[FeedReport] = field(default_factory=list)
    position: int | None = None  # the bridge's agents position afterwards
    seconds: float = 0.0


def rebuild_projections(
    *,
    from_scratch: bool = False,
    from_sequence: int | None = None,
    agents: Iterable[str | uuid.UUID] | None = None,
    only: Iterable[str] = FEEDS,
    consumer_prefix: str | None = None,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild the projections from the retained history: ``from_scratch`` (the whole stream) or
    ``from_sequence`` (AGENT_EVENTS from that sequence; the discovery store is always rebuilt
    whole). ``agents`` limits it to those agent ids. Raises RebuildRefused, ValueError for bad
    arguments, NatsUnavailable when NATS is away."""
    if from_scratch == (from_sequence is not None):
        raise ValueError("Give either from_scratch or from_sequence.")
    if from_sequence is not None and from_sequence < 1:
        raise ValueError("The start sequence must be 1 or more.")
    feeds = list(only)
    unknown = set(feeds) - set(FEEDS)
    if unknown:
        raise ValueError(f"Unknown feed {sorted(unknown)[0]!r}; use {' or '.join(FEEDS)}.")
    scope = None if agents is None else {str(uuid.UUID(str(agent))) for agent in agents}
    consumer = f"{consumer_prefix or bridge_consumer_prefix()}-agents"
    started = time.perf_counter()
    report = RebuildReport()
    if "agents" in feeds:
        feed, report.position = _rebuild_agents(from_scratch, from_sequence, scope, consumer, batch_size, progress)
        report.feeds.append(feed)
    if "discoveries" in feeds:
        report.feeds.append(_rebuild_discoveries(from_scratch, scope, batch_size, progress))
    report.seconds = time.perf_counter() - started
    for feed in report.feeds:
        logger.info(
            "rebuilt from %s #%s..#%s: %s messages, %s, rejected %s",
            feed.stream,
            feed.start,
            feed.end,
            feed.messages,
            dict(feed.outcome),
            dict(feed.rejected),
        )
    return report


def _rebuild_agents(
    from_scratch: bool,
    from_sequence: int | None,
    scope: set[str] | None,
    consumer: str,
    batch_size: int,
    progress: Progress | None,
) -> tuple[FeedReport, int | None]:
    with transaction.atomic():
        # Locked for the whole rebuild. Made only by a rebuild of every agent: a position of 0 made
        # for some agents would send a bridge that never ran back to the stream's start.
        positions = BridgePosition.objects.select_for_update()
        if scope is None:
            position, created = positions.get_or_create(consumer=consumer, defaults={"stream": AGENTS_STREAM})
        else:
            position, created = positions.filter(consumer=consumer).first(), False
        bounds = stream_bounds(AGENTS_STREAM)
        applied = position.sequence if position is not None else 0
        if applied > bounds.last:  # the stream was made again: the bridge would start over from 0
            applied = 0
            stream_started_over()
        wanted = bounds.first if from_scratch else from_sequence
        start = max(wanted, bounds.first, 1)
        notes = []
        if wanted < bounds.first:
            notes.append(f"events before #{bounds.first} are no longer retained")
        if scope is not None:
            end = min(applied, bounds.last)  # only what the bridge has applied; its position stays
            if end < start:
                notes.append(f"nothing to replay: the bridge ({consumer}) has applied up to #{applied}")
        else:
            end = bounds.last
            skipped = (max(applied + 1, bounds.first), min(start - 1, end))  # retained, never applied
            if not created and skipped[0] <= skipped[1]:
                raise RebuildRefused(
                    f"The bridge ({consumer}) has applied AGENT_EVENTS up to #{applied}: starting at #{start} "
                    f"would skip #{skipped[0]}..#{skipped[1]}. Start at #{skipped[0]} or lower, or --from-scratch."
                )
            if end < start:
                notes.append(f"nothing to replay: AGENT_EVENTS ends at #{end}")
        feed = FeedReport(AGENTS_STREAM, start, end, notes=notes)
        replay = AgentReplay(scope)
        feed.outcome["anomalies_forgotten"] = replay.forget(start, end)
        total = max(0, end - start + 1)
        for batch in read_range(AGENTS_STREAM, start, end, batch_size):
            outcome, rejected = replay.apply(batch)
            feed.outcome.update(outcome)
            feed.rejected.update(rejected)
            feed.messages += len(batch)
            if progress is not None:
                progress("agents", batch[-1][0] - start + 1, total)
        feed.outcome.update(replay.summary())
        if scope is None:
            position.stream = AGENTS_STREAM
            if end > applied:  # what a rebuild applied past the bridge reaches no page: nothing to frame
                position.framed_sequence, position.unframed_results = end, {}
            position.sequence = max(applied, end)
            position.save(update_fields=["stream", "sequence", "framed_sequence", "unframed_results", "updated_at"])
    return feed, position.sequence if position is not None else None


def _rebuild_discoveries(
    from_scratch: bool, scope: set[str] | None, batch_size: int, progress: Progress | None
) -> FeedReport:
    with transaction.atomic():
        bounds = stream_bounds(DISCOVERIES_STREAM)
        feed = FeedReport(DISCOVERIES_STREAM, bounds.first, bounds.last)
        replay = DiscoveryReplay(scope)
        feed.outcome["discoveries_replaced"] = replay.forget(bounds.first, bounds.last, whole=from_scratch)
        total = max(0, bounds.last - bounds.first + 1)
        for batch in read_range(DISCOVERIES_STREAM, bounds.first, bounds.last, batch_size):
            added, rejected = replay.apply(batch)
            feed.outcome["discovery"] += added
            feed.rejected.update(rejected)
            feed.messages += len(batch)
            if progress is not None:
                progress("discoveries", batch[-1][0] - bounds.first + 1, total)
    return feed
