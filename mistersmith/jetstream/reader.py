"""Reading a stream's retained history: the event log's replay, an agent's event history, the
dashboard's latest events. Reads go through an ephemeral ordered consumer (nothing durable is
left behind) from a stream sequence or a time, a page at a time, never the whole stream."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from mistersmith.jetstream import summaries
from mistersmith.jetstream.client import NatsUnavailable, connection
from mistersmith.jetstream.messages import excerpt
from mistersmith.jetstream.streams import STREAMS
from mistersmith.jetstream.subjects import intersection

MAX_LIMIT = 1000
KEEP_BYTES = 64 * 1024  # of each payload: a page of 1,000 messages of 1 MiB must not hold 1 GiB
IDLE_SECONDS = 0.25  # no next message within this: the end of the stream was reached


@dataclass(frozen=True)
class StreamMessage:
    stream: str
    sequence: int
    subject: str
    time: dt.datetime
    data: bytes  # the first KEEP_BYTES of the payload
    size: int  # of the whole payload

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.size

    def as_event(self) -> dict[str, Any]:
        """The shape of an event on the live "events" topic (the bridge sends the same)."""
        return log_event(self.stream, self.sequence, self.subject, self.time, self.data, self.size)


def log_event(
    stream: str, sequence: int, subject: str, time: dt.datetime | None, data: bytes, size: int | None = None
) -> dict[str, Any]:
    """An event log entry: where the message is, its start as text, and for supervision and system
    messages a readable line (``summary``, None when there is none; agent events and discoveries
    are not parsed again here, the bridge's hot path)."""
    return {
        "stream": stream,
        "sequence": sequence,
        "subject": subject,
        "time": time.isoformat() if time else None,
        "size": len(data) if size is None else size,
        "excerpt": excerpt(data),
        "summary": summaries.summarize(stream, subject, data),
    }


def stream_names() -> list[str]:
    return list(STREAMS)


def subject_filters(stream: str, subject: str | None) -> list[str]:
    """The consumer filters that read ``subject`` from ``stream``: ``[">"]`` for all of it, one per
    stream subject it overlaps otherwise (servers before NATS 2.10 refuse a filter that is not inside
    one stream subject), ``[]`` when it matches nothing there. A bad pattern raises ValueError."""
    if subject in (None, "", ">"):
        return [">"]
    stream_subjects = STREAMS[stream].subjects
    found = [i for each in stream_subjects if (i := intersection(subject, each)) is not None]
    if sorted(found) == sorted(stream_subjects):
        return [">"]
    return list(dict.fromkeys(found))


def read_stream(
    stream: str,
    *,
    subject: str | None = None,
    start_sequence: int | None = None,
    start_time: dt.datetime | None = None,
    limit: int = 200,
    timeout: float = 5.0,
) -> list[StreamMessage]:
    """Up to ``limit`` messages of ``stream`` (optionally only ``subject``, wildcards allowed),
    from a sequence, from a time, or from the start of what the stream retains.

    Raises ValueError for an unknown stream or a bad limit, NatsUnavailable when NATS is away.
    """
    if stream not in stream_names():
        raise ValueError(f"Unknown stream {stream!r}; use one of {', '.join(stream_names())}.")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}.")
    if start_sequence is not None and start_sequence < 1:
        raise ValueError("The start sequence must be 1 or more.")
    if start_sequence is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_sequence)
    elif start_time is not None:
        when = (start_time if start_time.tzinfo else start_time.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=when.isoformat())
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    filters = subject_filters(stream, subject)
    if not filters:
        return []
    nats = connection()
    client = nats.client()
    if start_time is not None:
        newest = last_message_time(stream)
        if newest is None or newest < when:  # after the stream's last message: nothing, never an old one
            return []
    found: list[StreamMessage] = []
    for each in filters:  # one ordered read per filter; merged in stream order
        found.extend(nats.run(_read(client, stream, each, config, limit), timeout))
    if start_time is not None:
        # NATS reads a start time past 2262 (int64 nanoseconds) as "from the first message"
        found = [message for message in found if message.time >= when]
    return sorted(found, key=lambda message: message.sequence)[:limit]


def read_message(stream: str, sequence: int) -> StreamMessage | None:
    """The whole message at ``sequence`` of ``stream`` (a direct get: no consumer), or None when the
    stream no longer holds it. ValueError for an unknown stream; NatsUnavailable when NATS is away."""
    if stream not in stream_names():
        raise ValueError(f"Unknown stream {stream!r}; use one of {', '.join(stream_names())}.")
    nats = connection()
    js = nats.client().jetstream()

    async def read() -> Any:
        try:
            return await js.get_msg(stream, seq=sequence)
        except NotFoundError:
            return None

    raw = nats.run(read())
    if raw is None:
        return None
    data = raw.data or b""
    return StreamMessage(stream, raw.seq, raw.subject, raw.time, data, len(data))


def last_message_time(stream: str) -> dt.datetime | None:
    """The stream time of ``stream``'s last message (None when it holds none)."""
    nats = connection()
    js = nats.client().jetstream()

    async def read() -> dt.datetime | None:
        state = (await js.stream_info(stream)).state
        if not state.messages:
            return None
        try:
            return (await js.get_msg(stream, seq=state.last_seq)).time
        except NotFoundError:
            return None

    return nats.run(read())


def read_latest(stream: str, *, subject: str | None = None, count: int = 20) -> list[StreamMessage]:
    """The newest ``count`` messages of a stream, or of ``subject`` in it, oldest first.

    A stream holds up to a million messages of many subjects, so the newest of one subject are
    neither the stream's last ``count`` nor found by reading from the start. A consumer filtered on
    the subject knows how many of its messages lie at or after a sequence (``num_pending``) without
    delivering any: a galloping search back from the end (windows of count, 4 x count, ...) finds a
    start from which at least ``count`` remain, bisecting further only while one read could not
    take them all. A handful of API calls, logarithmic in the stream's size; one read returns them.
    """
    nats = connection()
    js = nats.client().jetstream()  # connected here, outside the loop that runs the search
    filters = subject_filters(stream, subject)
    if not filters:
        return []
    found = nats.run(_newest_start(js, stream, filters, count), timeout=10)
    if found is None:
        return []
    start, pending = found
    # All that remain from the start (and a few that may have arrived since), the newest kept.
    messages = read_stream(stream, subject=subject, start_sequence=start, limit=min(MAX_LIMIT, pending + count))
    return messages[-count:]


async def _pending_from(js: Any, stream: str, filters: list[str], start: int) -> int:
    """How many messages under ``filters`` lie at or after stream sequence ``start`` (nothing is delivered)."""
    pending = 0
    for each in filters:
        config = ConsumerConfig(
            filter_subject=None if each == ">" else each,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=10.0,  # removed by the server if the delete below never happens
            mem_storage=True,
        )
        info = await js.add_consumer(stream, config)
        with contextlib.suppress(NatsError):
            await js.delete_consumer(stream, info.name)
        pending += info.num_pending
    return pending


async def _newest_start(js: Any, stream: str, filters: list[str], count: int) -> tuple[int, int] | None:
    """A stream sequence from which at least ``count`` (or, when fewer exist, all) messages under
    ``filters`` remain, and at most MAX_LIMIT when it can be helped, with that number; None when none."""
    state = (await js.stream_info(stream)).state
    first, last = state.first_seq, state.last_seq
    if not state.messages or last < first:
        return None
    if filters == [">"]:  # every message counts: no search needed
        start = max(first, last - count + 1)
        return start, last - start + 1
    high, window = last + 1, count
    while True:
        start = max(first, last - window + 1)
        pending = await _pending_from(js, stream, filters, start)
        if pending >= count or start == first:
            break
        high, window = start, window * 4
    if pending == 0:
        return None
    low = start  # too many to read at once (a dense burst): bisect towards the end
    while pending > MAX_LIMIT and high - low > 1:
        middle = (low + high) // 2
        found = await _pending_from(js, stream, filters, middle)
        if found >= count:
            low, pending = middle, found
        else:
            high = middle
    return low, pending


async def _read(client: Any, stream: str, subject: str, config: ConsumerConfig, limit: int) -> list:
    js = client.jetstream()
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    found: list[StreamMessage] = []
    done = asyncio.Event()
    last_seq = info.state.last_seq

    async def on_message(message: Any) -> None:
        metadata = message.metadata
        if len(found) < limit:
            found.append(
                StreamMessage(
                    stream,
                    metadata.sequence.stream,
                    message.subject,
                    metadata.timestamp,
                    message.data[:KEEP_BYTES],
                    len(message.data),
                )
            )
        if len(found) >= limit or metadata.sequence.stream >= last_seq or metadata.num_pending == 0:
            done.set()

    subscription = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, config=config, cb=on_message, manual_ack=True
    )
    try:
        # Nothing matches from the start (a subject with no messages there): say so at once
        # instead of waiting IDLE_SECONDS for a message that cannot come.
        info = await subscription.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:
            return found
        while not done.is_set():
            before = len(found)
            try:
                await asyncio.wait_for(done.wait(), IDLE_SECONDS)
            except TimeoutError:
                if len(found) == before:  # nothing more came: the end of what matches
                    break
    finally:
        await subscription.unsubscribe()
    return found


__all__ = [
    "NatsUnavailable",
    "StreamMessage",
    "last_message_time",
    "log_event",
    "read_latest",
    "read_stream",
    "stream_names",
]
