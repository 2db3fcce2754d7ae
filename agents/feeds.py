"""The agents' feeds of the bridge: AGENT_EVENTS into the agents projection (the one feed that
keeps a position, and a framed position: see mistersmith/live/bridge.py) and DISCOVERIES into the
discovery store; the discoveries topic's socket filter and its stream position. Registered with the
live path's feed registry when the apps are ready. The event parsers are shared with
``rebuild_projections`` (agents/rebuild.py)."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.db.models import Max

from agents.discoveries import DiscoveryFilter, add_discoveries, parse_discovery
from agents.events import AgentEvent, parse_agent_event, subject_agent_id
from agents.models import Discovery
from agents.projections import apply_agent_events, forget_stream_sequences
from mistersmith.jetstream.database_work import database_work
from mistersmith.jetstream.messages import InvalidMessage, decode_json
from mistersmith.live.bridge import advance_position, keep_results
from mistersmith.live.frames import FrameBuffer, NoFrames
from mistersmith.live.registry import (
    Batch,
    BridgeStats,
    Feed,
    register_feed,
    register_position,
    register_topic_filter,
    reject,
)


def parse_agent_items(
    items: Batch, stats: BridgeStats, *, dead_letters: bool = True
) -> tuple[list[tuple[int, AgentEvent]], Counter]:
    """AGENT_EVENTS messages as (sequence, event) pairs, and the refused ones counted by reason.

    Shared by the bridge and ``rebuild_projections``; a rebuild passes ``dead_letters=False``
    (the bridge recorded those messages when it first refused them)."""
    events: list[tuple[int, AgentEvent]] = []
    rejected: Counter = Counter()
    for item in items:
        sequence, subject, data = item
        try:
            events.append((sequence, parse_agent_event(decode_json(data), subject_agent=subject_agent_id(subject))))
        except InvalidMessage as error:
            if subject.endswith(".events"):
                rejected[reject("AGENT_EVENTS", item, error) if dead_letters else error.reason] += 1
            else:  # agent.*.status and agent.*.output have no schema in the contract: logged, not refused
                stats.processed[f"unparsed:{subject.rsplit('.', 1)[-1]}"] += 1
    return events, rejected


def _reframe_result(sequence: int, event: AgentEvent, results: dict[str, str]) -> str:
    """What applying an event already applied did, for its frame sent again: heartbeats and outputs
    always do the same; a state event's result was kept at its commit ("replayed" if it was not)."""
    if event.kind == "Heartbeat":
        return "heartbeat"
    if event.kind == "Output":
        return "output"
    return results.get(str(sequence), "replayed")


@database_work
def apply_agent_batch(batch: Batch, stats: BridgeStats, consumer: str, frames: FrameBuffer | None = None) -> None:
    """agent.*.events: one transaction for the batch, the consumer's position included."""
    frames = frames if frames is not None else FrameBuffer()

    def to_frame(sequence: int | None, event: AgentEvent, result: str) -> None:
        change = {"kind": event.kind, "agent_id": str(event.agent_id), "result": result}
        if event.new_state or event.kind in ("Terminated", "Error"):
            change["status"] = event.new_state or ("Terminated" if event.kind == "Terminated" else "Error")
        if event.text is not None:
            change["text"] = event.text[:2000]
        if event.occurred_at is not None:
            change["at"] = event.occurred_at.isoformat()
        frames.add("agents", change, sequence, "AGENT_EVENTS")
        frames.add(f"agent.{event.agent_id}", change, sequence, "AGENT_EVENTS")

    if not batch:
        return
    framing = not isinstance(frames, NoFrames)
    sequences = [item[0] for item in batch]
    fresh_results: dict[str, str] = {}

    def to_frame_and_keep(sequence: int | None, event: AgentEvent, result: str) -> None:
        if event.kind not in ("Heartbeat", "Output") and sequence is not None:
            fresh_results[str(sequence)] = result
        to_frame(sequence, event, result)

    with transaction.atomic():
        advanced = advance_position(consumer, min(sequences), max(sequences), frames.sent_through, framing)
        fresh, again = [], []
        for item in batch:
            if item[0] > advanced.applied:
                fresh.append(item)
            else:  # applied already: never again; framed again if its frames may not have gone out
                stats.processed["replay_skipped"] += 1
                if framing and item[0] > advanced.framed:
                    again.append(item)
        if again:
            replayed, _ = parse_agent_items(again, BridgeStats(), dead_letters=False)  # counted the first time
            for sequence, event in replayed:
                to_frame(sequence, event, _reframe_result(sequence, event, advanced.results))
            stats.processed["reframed"] += len(again)
        events, rejected = parse_agent_items(fresh, stats)
        outcome = apply_agent_events(events, on_applied=to_frame_and_keep if framing else None)
        keep_results(consumer, advanced, fresh_results)
    stats.processed.update(outcome)
    stats.rejected.update(rejected)


def parse_discovery_items(items: Batch, *, dead_letters: bool = True) -> tuple[list[Discovery], Counter]:
    """DISCOVERIES messages as unsaved discoveries, and the refused ones counted by reason
    (shared by the bridge and ``rebuild_projections``, which does not dead-letter them again)."""
    found: list[Discovery] = []
    rejected: Counter = Counter()
    for item in items:
        try:
            found.append(parse_discovery(decode_json(item[2]), sequence=item[0]))
        except InvalidMessage as error:
            rejected[reject("DISCOVERIES", item, error) if dead_letters else error.reason] += 1
    return found, rejected


@database_work
def apply_discovery_batch(batch: Batch, stats: BridgeStats, consumer: str, frames: FrameBuffer) -> None:
    """discoveries.>: into the store (a stream sequence is stored once), and to the live page."""
    found, rejected = parse_discovery_items(batch)
    stats.rejected.update(rejected)
    stats.processed["discovery"] += add_discoveries(found)
    for discovery in found:
        frames.add("discoveries", discovery.as_contract(), discovery.stream_sequence, "DISCOVERIES")


def newest_discovery_sequence() -> int | None:
    """The last DISCOVERIES sequence the store holds (the discoveries feed keeps no position row)."""
    return Discovery.objects.aggregate(newest=Max("stream_sequence"))["newest"]


register_feed(
    Feed(
        "agents",
        "AGENT_EVENTS",
        apply_agent_batch,
        keeps_position=True,
        order=1,
        stream_started_over=forget_stream_sequences,
    )
)
register_feed(Feed("discoveries", "DISCOVERIES", apply_discovery_batch, order=2))
register_position("DISCOVERIES", newest_discovery_sequence)
register_topic_filter("discoveries", DiscoveryFilter.from_query)
