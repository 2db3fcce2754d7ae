"""Rebuilding the console's projections from the streams' retained history.

The projections are what the bridge derives from events: agent state, heartbeats, session
output and anomalies (AGENT_EVENTS) and the discovery store (DISCOVERIES). A rebuild replays a
range of a stream through the bridge's own code (``parse_agent_items`` then
``apply_agent_events``; ``parse_discovery_items`` then ``add_discoveries``), so there is one
piece of code per job and a rebuilt projection is what the live bridge would have made.

Agents, range ``start``..``end`` of AGENT_EVENTS:
- first the range is *rewound*: the anomalies it produced are deleted, and each agent it touches
  is put back where it stood before its first state event in the range (Spawned: Created with
  no heartbeat, its whole life is in the range; StateChanged: the event's old_state; Terminated
  or Error: the state they lead to, since both are reachable from any live state). Then the
  range is applied in order. Rewinding the same range again leads to the same start, so a
  second run gives the same projection: the rebuild is idempotent.
- heartbeats only move forward, and session output is keyed by stream sequence (an Output
  already held is not appended again; a missing one is appended to the agent's newest open
  session, the bridge's rule). Session messages are never deleted: an Output names no session,
  so the message is the only record of the session it went to.
- all of it is one transaction that holds the bridge's position row (``<prefix>-agents``)
  locked: the live bridge's next batch waits instead of interleaving, and a failed rebuild
  leaves everything as it was. At the end the position is set to ``end`` (if the bridge was
  behind), so the bridge neither re-applies what the rebuild applied nor skips what it did not.
  A rebuild of some agents only (``agents=``) replays up to the bridge's position and leaves it.

Discoveries: the stream keeps the newest 1,000 messages and the store the newest 1,000
discoveries, so the store is rebuilt whole from the stream (held rows from the retained range
are replaced; ``from_scratch`` deletes every held row first), in one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from agents.discoveries import add_discoveries
from agents.events import AgentEvent, subject_agent_id
from agents.lifecycle import AgentState
from agents.models import Agent, AgentAnomaly, Discovery
from agents.projections import STATE_EVENTS, apply_agent_events, forget_stream_sequences
from mistersmith.bridge import BridgeStats, parse_agent_items, parse_discovery_items
from mistersmith.live import bridge_consumer_prefix
from mistersmith.models import BridgePosition
from mistersmith.operations.history import read_range, stream_bounds

logger = logging.getLogger(__name__)

AGENTS_STREAM = "AGENT_EVENTS"
DISCOVERIES_STREAM = "DISCOVERIES"
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
            forget_stream_sequences()
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
        anomalies = AgentAnomaly.objects.filter(stream_sequence__gte=start, stream_sequence__lte=end)
        if scope is not None:
            anomalies = anomalies.filter(agent_id__in=scope)
        feed.outcome["anomalies_forgotten"] = anomalies.delete()[0]
        stats, seen = BridgeStats(), set()
        total = max(0, end - start + 1)
        for batch in read_range(AGENTS_STREAM, start, end, batch_size):
            items = batch if scope is None else [item for item in batch if subject_agent_id(item[1]) in scope]
            events, rejected = parse_agent_items(items, stats, dead_letters=False)
            _rewind(events, seen)
            feed.outcome.update(apply_agent_events(events))
            feed.rejected.update(rejected)
            feed.messages += len(batch)
            if progress is not None:
                progress("agents", batch[-1][0] - start + 1, total)
        feed.outcome.update(stats.processed)
        feed.outcome["agents"] = len(seen)
        if scope is None:
            position.stream = AGENTS_STREAM
            if end > applied:  # what a rebuild applied past the bridge reaches no page: nothing to frame
                position.framed_sequence, position.unframed_results = end, {}
            position.sequence = max(applied, end)
            position.save(update_fields=["stream", "sequence", "framed_sequence", "unframed_results", "updated_at"])
    return feed, position.sequence if position is not None else None


def _rewind(events: list[tuple[int, AgentEvent]], seen: set[uuid.UUID]) -> None:
    """Put each agent met for the first time in the range back where it stood before its first
    state event there (see the module's docstring); a few UPDATEs per batch whatever its size."""
    spawned: list[uuid.UUID] = []
    put_in: dict[str, list[uuid.UUID]] = defaultdict(list)
    for _, event in events:
        if event.kind not in STATE_EVENTS or event.agent_id in seen:
            continue
        seen.add(event.agent_id)
        if event.kind == "Spawned":
            spawned.append(event.agent_id)
        elif event.kind == "StateChanged":
            put_in[event.old_state].append(event.agent_id)
        else:
            put_in[AgentState.TERMINATED if event.kind == "Terminated" else AgentState.ERROR].append(event.agent_id)
    if spawned:
        Agent.objects.filter(pk__in=spawned).update(status=AgentState.CREATED, last_heartbeat=None)
    for state, ids in put_in.items():
        Agent.objects.filter(pk__in=ids).update(status=state)


def _rebuild_discoveries(
    from_scratch: bool, scope: set[str] | None, batch_size: int, progress: Progress | None
) -> FeedReport:
    with transaction.atomic():
        bounds = stream_bounds(DISCOVERIES_STREAM)
        feed = FeedReport(DISCOVERIES_STREAM, bounds.first, bounds.last)
        held = Discovery.objects.all() if scope is None else Discovery.objects.filter(agent_id__in=scope)
        if not from_scratch:
            held = held.filter(stream_sequence__gte=bounds.first, stream_sequence__lte=bounds.last)
        feed.outcome["discoveries_replaced"] = held.delete()[0]
        total = max(0, bounds.last - bounds.first + 1)
        for batch in read_range(DISCOVERIES_STREAM, bounds.first, bounds.last, batch_size):
            found, rejected = parse_discovery_items(batch, dead_letters=False)
            if scope is not None:
                found = [discovery for discovery in found if discovery.agent_id in scope]
            feed.outcome["discovery"] += add_discoveries(found)
            feed.rejected.update(rejected)
            feed.messages += len(batch)
            if progress is not None:
                progress("discoveries", batch[-1][0] - bounds.first + 1, total)
    return feed
