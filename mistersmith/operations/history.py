"""Reading a range of a stream's retained history in order, a batch at a time, whole payloads.

``mistersmith.stream_reader`` serves pages to people (a thousand messages, payloads cut at
64 KiB); a rebuild needs every message of a range with its full payload, at the speed the
server can deliver. It reads through an ephemeral pull consumer with no acks (nothing durable
is left behind: the server also drops it after a minute without a fetch) and stops at the
range's end, so messages published meanwhile are left to the live bridge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


def read_range(stream: str, start: int, end: int, batch: int = 500) -> Iterator[Batch]:
    """The messages of ``stream`` with sequences ``start``..``end``, in order, ``batch`` at a time.

    Sequences the stream no longer holds (aged out, deleted) are simply absent. The consumer is
    deleted when the iteration ends, also when the caller stops early or fails.
    """
    if start > end:
        return
    nats = connection()
    client = nats.client()
    js = client.jetstream()
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = nats.run(js.add_consumer(stream, config))
    subscription = None
    try:
        subscription = nats.run(js.pull_subscribe_bind(consumer=info.name, stream=stream))
        if info.num_pending == 0:
            return
        while True:
            messages = nats.run(_fetch(subscription, batch), FETCH_TIMEOUT + 5)
            if not messages:
                return  # nothing more within the timeout: the rest of the range is gone
            items = [(m.metadata.sequence.stream, m.subject, m.data) for m in messages]
            within = [item for item in items if item[0] <= end]
            if within:
                yield within
            last = messages[-1].metadata
            if last.sequence.stream >= end or last.num_pending == 0:
                return
    finally:
        with contextlib.suppress(NatsError, NatsUnavailable):
            if subscription is not None:
                nats.run(subscription.unsubscribe())
            nats.run(js.delete_consumer(stream, info.name))


async def _fetch(subscription: Any, batch: int) -> list:
    try:
        return await subscription.fetch(batch, timeout=FETCH_TIMEOUT)
    except (TimeoutError, NatsTimeoutError):
        return []
