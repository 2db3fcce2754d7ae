"""The agents' rules for replaying a range of their streams over the projections (the generic
driver, which reads the range, locks the bridge's position and reports, is
mistersmith/operations/rebuild.py). A replay runs the bridge's own code (``parse_agent_items``
then ``apply_agent_events``; ``parse_discovery_items`` then ``add_discoveries``), so a rebuilt
projection is what the live bridge would have made.

Agents, range ``start``..``end`` of AGENT_EVENTS (:class:`AgentReplay`):
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

Discoveries (:class:`DiscoveryReplay`): the stream keeps the newest 1,000 messages and the store
the newest 1,000 discoveries, so the store is rebuilt whole from the stream (held rows from the
retained range are replaced; ``whole`` deletes every held row first).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence

from agents.discoveries import add_discoveries
from agents.events import AgentEvent, subject_agent_id
from agents.feeds import parse_agent_items, parse_discovery_items
from agents.lifecycle import AgentState
from agents.models import Agent, AgentAnomaly, Discovery
from agents.projections import STATE_EVENTS, apply_agent_events, forget_stream_sequences
from mistersmith.live.registry import BridgeStats

AGENTS_STREAM = "AGENT_EVENTS"
DISCOVERIES_STREAM = "DISCOVERIES"
Batch = Sequence[tuple[int, str, bytes]]  # (stream sequence, subject, data), as the range reader gives them


def stream_started_over() -> None:
    """AGENT_EVENTS was made again (its sequences start over): forget the sequences the
    projections hold, or the new stream's events would look already applied."""
    forget_stream_sequences()


class AgentReplay:
    """One replay of a range of AGENT_EVENTS over the agents' projection, for every agent or only
    those of ``scope`` (agent ids as strings)."""

    def __init__(self, scope: set[str] | None) -> None:
        self.scope = scope
        self.seen: set[uuid.UUID] = set()  # agents already rewound in this replay
        self.stats = BridgeStats()

    def forget(self, start: int, end: int) -> int:
        """Delete the anomalies the range produced (it will produce them again); how many."""
        anomalies = AgentAnomaly.objects.filter(stream_sequence__gte=start, stream_sequence__lte=end)
        if self.scope is not None:
            anomalies = anomalies.filter(agent_id__in=self.scope)
        return anomalies.delete()[0]

    def apply(self, batch: Batch) -> tuple[Counter, Counter]:
        """Rewind the agents the batch meets first, then apply it: (outcome, refused by reason)."""
        items = (
            list(batch) if self.scope is None else [item for item in batch if subject_agent_id(item[1]) in self.scope]
        )
        events, rejected = parse_agent_items(items, self.stats, dead_letters=False)
        rewind(events, self.seen)
        return Counter(apply_agent_events(events)), rejected

    def summary(self) -> Counter:
        """What the whole replay did, beyond the batches' outcomes: events by kind, agents met."""
        done = Counter(self.stats.processed)
        done["agents"] = len(self.seen)
        return done


def rewind(events: list[tuple[int, AgentEvent]], seen: set[uuid.UUID]) -> None:
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


class DiscoveryReplay:
    """One rebuild of the discovery store from the DISCOVERIES stream's retained range."""

    def __init__(self, scope: set[str] | None) -> None:
        self.scope = scope

    def forget(self, first: int, last: int, *, whole: bool) -> int:
        """Delete the held discoveries the range will bring again (``whole``: every held one)."""
        held = Discovery.objects.all() if self.scope is None else Discovery.objects.filter(agent_id__in=self.scope)
        if not whole:
            held = held.filter(stream_sequence__gte=first, stream_sequence__lte=last)
        return held.delete()[0]

    def apply(self, batch: Batch) -> tuple[int, Counter]:
        """Add the batch's discoveries: (how many were added, refused by reason)."""
        found, rejected = parse_discovery_items(list(batch), dead_letters=False)
        if self.scope is not None:
            found = [discovery for discovery in found if discovery.agent_id in self.scope]
        return add_discoveries(found), rejected
