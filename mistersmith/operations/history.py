"""Reading a range of a stream's retained history in order, a batch at a time, whole payloads.

``mistersmith.stream_reader`` serves pages to people (a thousand messages, payloads cut at
64 KiB); a rebuild needs every message of a range with its full payload, at the speed the
server can deliver. It reads through an ephemeral pull consumer with no acks (nothing durable
is left behind: the server also drops it after a minute without a fetch) and stops at the
range's end, so messages published meanwhile are left to the live bridge. The snapshot export
reads a stream's retained messages through the same reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mistersmith.nats import NatsUnavailable, connection

FETCH_TIMEOUT = 5.0
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


async def retained_messages(
    js: Any,
    stream: str,
    start: int,
    end: int | None = None,
    batch: int = 500,
    timeout: float = FETCH_TIMEOUT,
    fetch_bytes: int | None = None,
) -> AsyncIterator[list[Msg]]:
    """The messages of ``stream`` from sequence ``start`` to ``end`` (its last one when None), in
    order, at most ``batch`` at a time, whole (subject, headers, data, metadata): the one reader of
    a stream's history for the rebuild, the bridge's first-start catch-up and the snapshot export.

    ``fetch_bytes`` bounds the memory a fetch may hold: the next fetch asks for as many messages as
    fit in it at the mean size seen so far (a stream of 1 MiB outputs is read a few at a time, one
    of heartbeats ``batch`` at a time). Sequences the stream no longer holds (aged out, deleted)
    are simply absent; nothing arriving within ``timeout`` ends the read. The ephemeral consumer
    is deleted when the iteration ends, also when the caller stops early or fails.
    """
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = await js.add_consumer(stream, config)
    subscription = None
    try:
        subscription = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
        if info.num_pending == 0:
            return
        # a first fetch of a few dozen tells the mean size; a stream of 1 MiB messages costs 64 MiB then
        size, read_bytes, read_count = (batch if fetch_bytes is None else min(batch, 64)), 0, 0
        while True:
            try:
                messages = await subscription.fetch(size, timeout=timeout)
            except (TimeoutError, NatsTimeoutError):
                return  # nothing more within the timeout: the rest of the range is gone
            if fetch_bytes is not None and messages:
                read_bytes += sum(len(m.data) + len(m.subject) for m in messages)
                read_count += len(messages)
                size = max(1, min(batch, fetch_bytes * read_count // max(1, read_bytes)))
            within = [m for m in messages if end is None or m.metadata.sequence.stream <= end]
            if within:
                yield within
            last = messages[-1].metadata if messages else None
            if last is None or (end is not None and last.sequence.stream >= end) or last.num_pending == 0:
                return
    finally:
        with contextlib.suppress(NatsError):
            if subscription is not None:
                await subscription.unsubscribe()
            await js.delete_consumer(stream, info.name)


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
