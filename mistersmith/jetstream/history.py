"""Reading a range of a stream's retained history from synchronous code (the rebuild), on the
process's NATS connection; the reader itself is ``mistersmith.jetstream.range_reader``.

``mistersmith.jetstream.reader`` serves pages to people (a thousand messages, payloads cut at
64 KiB); a rebuild needs every message of a range with its full payload, at the speed the
server can deliver. It reads through an ephemeral pull consumer with no acks (nothing durable
is left behind: the server also drops it after a minute without a fetch) and stops at the
range's end, so messages published meanwhile are left to the live bridge. The snapshot export
reads a stream's retained messages through the same reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from mistersmith.jetstream.client import NatsUnavailable, connection
from mistersmith.jetstream.range_reader import FETCH_TIMEOUT, retained_messages

__all__ = ["Batch", "StreamBounds", "read_range", "retained_messages", "stream_bounds"]
Batch = list[tuple[int, str, bytes]]  # (stream sequence, subject, data), as the bridge applies them


@dataclass(frozen=True)
class StreamBounds:
    """What a stream retains now: sequences ``first``..``last`` (``messages`` of them remain)."""

    first: int
    last: int
    messages: int


def stream_bounds(stream: str) -> StreamBounds:
    """The stream's first and last retained sequence (NatsUnavailable when NATS is away)."""
    nats = connection()
    js = nats.client().jetstream()
    state = nats.run(js.stream_info(stream)).state
    return StreamBounds(first=state.first_seq, last=state.last_seq, messages=state.messages)


def read_range(stream: str, start: int, end: int, batch: int = 500) -> Iterator[Batch]:
    """``retained_messages`` for synchronous code (the rebuild), as the bridge's (sequence, subject,
    data) items, on the process's NATS connection."""
    if start > end:
        return
    nats = connection()
    reader = retained_messages(nats.client().jetstream(), stream, start, end, batch)

    async def step() -> list[Msg] | None:
        return await anext(reader, None)

    try:
        while (messages := nats.run(step(), FETCH_TIMEOUT + 5)) is not None:
            yield [(m.metadata.sequence.stream, m.subject, m.data) for m in messages]
    finally:
        with contextlib.suppress(NatsError, NatsUnavailable):
            nats.run(reader.aclose())
