"""An agent's event history: the newest messages on ``agent.<uuid>.>`` in the AGENT_EVENTS stream.

The stream holds every agent's events (up to a million messages), so "the last 100 of this agent" is
neither the stream's last 100 nor something to find by reading it from the start. A consumer filtered
on the agent's subjects knows how many of its messages lie at or after a start sequence
(``num_pending``), without delivering any: a galloping search back from the end of the stream (windows
of count, 4 x count, 16 x count ...) finds a start from which at least ``count`` remain, bisecting
further only while more than one read can take; one read then returns them and the newest are kept.
That is a handful of API calls, logarithmic in the stream's size, never a scan of the stream.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agents.events import parse_agent_event, subject_agent_id
from mistersmith.messages import InvalidMessage, decode_json
from mistersmith.models import excerpt
from mistersmith.nats import connection
from mistersmith.stream_reader import MAX_LIMIT, StreamMessage, read_stream

STREAM = "AGENT_EVENTS"
TEXT_LIMIT = 2000  # the bridge's frames cut texts there too


async def _pending_from(js: Any, subject: str, start: int) -> int:
    """How many messages on ``subject`` lie at or after stream sequence ``start`` (nothing is delivered)."""
    config = ConsumerConfig(
        filter_subject=subject,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=10.0,  # removed by the server if the delete below never happens
        mem_storage=True,
    )
    info = await js.add_consumer(STREAM, config)
    with contextlib.suppress(NatsError):
        await js.delete_consumer(STREAM, info.name)
    return info.num_pending


async def _newest_start(js: Any, subject: str, count: int) -> tuple[int, int] | None:
    """A stream sequence from which at least ``count`` (or, when fewer exist, all) messages on ``subject``
    remain, and at most MAX_LIMIT when it can be helped, with that number; None when there are none."""
    state = (await js.stream_info(STREAM)).state
    first, last = state.first_seq, state.last_seq
    if not state.messages or last < first:
        return None
    # Gallop back from the end: windows of count, 4 x count, 16 x count ... until one holds enough.
    high, window = last + 1, count
    while True:
        start = max(first, last - window + 1)
        pending = await _pending_from(js, subject, start)
        if pending >= count or start == first:
            break
        high, window = start, window * 4
    if pending == 0:
        return None
    # Too many to read at once (a dense burst): bisect towards the end until a read can take them all.
    low = start
    while pending > MAX_LIMIT and high - low > 1:
        middle = (low + high) // 2
        found = await _pending_from(js, subject, middle)
        if found >= count:
            low, pending = middle, found
        else:
            high = middle
    return low, pending


def latest_messages(subject: str, count: int = 100) -> list[StreamMessage]:
    """The newest ``count`` messages on ``subject`` in AGENT_EVENTS, oldest first.

    Raises NatsUnavailable when NATS is away.
    """
    nats = connection()
    js = nats.client().jetstream()  # connected here, outside the loop that runs the search
    found = nats.run(_newest_start(js, subject, count), timeout=10)
    if found is None:
        return []
    start, pending = found
    # All that remain from the start (and a few that may have arrived since), the newest kept.
    messages = read_stream(STREAM, subject=subject, start_sequence=start, limit=min(MAX_LIMIT, pending + count))
    return messages[-count:]


def history_event(message: StreamMessage) -> dict[str, Any]:
    """A stored message in the shape of a live ``agent.<uuid>`` event (kind, status, text, at), plus its
    subject and stream time, so a page draws history and live events with one function."""
    event: dict[str, Any] = {
        "stream": message.stream,
        "sequence": message.sequence,
        "subject": message.subject,
        "time": message.time.isoformat() if message.time else None,
    }
    if not message.subject.endswith(".events"):  # agent.<id>.status and .output: no schema in the contract
        event.update(kind=message.subject.rsplit(".", 1)[-1], text=excerpt(message.data))
        return event
    try:
        parsed = parse_agent_event(decode_json(message.data), subject_agent=subject_agent_id(message.subject))
    except InvalidMessage as error:
        event.update(kind="invalid", text=f"{error}: {excerpt(message.data)}")
        return event
    event["kind"] = parsed.kind
    if parsed.new_state or parsed.kind in ("Terminated", "Error"):
        event["status"] = parsed.new_state or parsed.kind
    if parsed.old_state:
        event["old_status"] = parsed.old_state
    if parsed.reason:
        event["reason"] = parsed.reason
    if parsed.text is not None:
        event["text"] = parsed.text[:TEXT_LIMIT]
    if parsed.occurred_at is not None:
        event["at"] = parsed.occurred_at.isoformat()
    return event


def agent_history(agent_id: Any, count: int = 100) -> list[dict[str, Any]]:
    """The agent's newest ``count`` events as page events, oldest first (NatsUnavailable when NATS is away)."""
    return [history_event(message) for message in latest_messages(f"agent.{agent_id}.>", count)]
