"""The node's agent's events after a failure, from the AGENT_EVENTS stream (the record the agent
pages draw their history from: agents/history.py), read from the failure's time on.

One filtered read (mistersmith.jetstream.reader, an ephemeral consumer: nothing left behind) of at
most EVENT_LIMIT + 1 messages on ``agent.<id>.>``, kept up to the end of the story; past the limit
the page says there are more and links to the event log's replay of the same subject and time.
The stream keeps 24 hours: an older failure's events are gone, and the story says so.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from agents.history import STREAM, history_event
from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.jetstream.reader import read_stream
from mistersmith.jetstream.streams import STREAMS

EVENT_LIMIT = 200


@dataclass
class AgentEvents:
    """The events (page events of agents/history.py, oldest first), whether more were cut, and a
    note when none could be read (NATS away, retention passed)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False
    note: str = ""


def agent_subject(agent_id: uuid.UUID | str) -> str:
    return f"agent.{agent_id}.>"


def events_after(agent_id: uuid.UUID, since: dt.datetime, until: dt.datetime) -> AgentEvents:
    """The agent's events with stream time in [since, until), at most EVENT_LIMIT."""
    retention = dt.timedelta(seconds=STREAMS[STREAM].max_age or 0)
    now = dt.datetime.now(dt.UTC)
    if retention and until < now - retention:
        hours = int(retention.total_seconds() // 3600)
        return AgentEvents(note=f"{STREAM} keeps {hours} h of events: those after this failure have left the stream.")
    try:
        messages = read_stream(STREAM, subject=agent_subject(agent_id), start_time=since, limit=EVENT_LIMIT + 1)
    except NatsUnavailable as error:
        return AgentEvents(note=f"The agent's events cannot be read now: {error}")
    kept = [message for message in messages if message.time < until]
    more = len(kept) > EVENT_LIMIT
    note = ""
    if retention and since < now - retention:
        note = f"{STREAM} keeps {int(retention.total_seconds() // 3600)} h: the first events may have left the stream."
    return AgentEvents([history_event(message) for message in kept[:EVENT_LIMIT]], more, note)
