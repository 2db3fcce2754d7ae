"""Reading a stream's retained range: in order, whole messages, through an ephemeral consumer
without acks (``retained_messages``), and in a process of its own for a bridge's first-start
catch-up (``read_range_in_child``).

Reading a message through nats-py costs about as much Python time as parsing and applying it
(the client builds a ``Msg`` and runs the event loop for each one), and one process's Python runs
on one core at a time. A catch-up of a million retained events is read in a child process, which
hands whole chunks ``[(sequence, subject, data), ...]`` over a pipe (one pickle per chunk), while
the bridge's process parses and applies: the two work on both cores, and each chunk is read ahead
of the one being applied by at most the pipe's buffer plus one chunk.

This module imports no Django and no app: the child (started with ``spawn``, a fresh interpreter,
since forking a process with threads and an event loop is unsafe) loads only it and nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

Chunk = list[tuple[int, str, bytes]]
FETCH_TIMEOUT = 5.0
_END = b"end"


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
    a stream's history for the rebuild, the bridge's first-start catch-up (from a child process,
    below) and the snapshot export.

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


class RangeReadError(RuntimeError):
    """The reading process failed; its error, as text."""


def _child(
    url: list[str], stream: str, start: int, end: int, chunk_messages: int, chunk_bytes: int, out: Connection
) -> None:
    """The child's whole life: read ``start..end`` and send it chunk by chunk, then ``_END``."""
    try:
        asyncio.run(_read_into(url, stream, start, end, chunk_messages, chunk_bytes, out))
        out.send_bytes(_END)
    except BaseException as error:  # every failure must reach the parent as text
        with contextlib.suppress(OSError):
            out.send_bytes(b"error:" + f"{type(error).__name__}: {error}".encode(errors="replace"))
    finally:
        out.close()


async def _read_into(
    url: list[str], stream: str, start: int, end: int, chunk_messages: int, chunk_bytes: int, out: Connection
) -> None:
    import nats

    client = await nats.connect(url, max_reconnect_attempts=3)
    try:
        chunk: Chunk = []
        size = 0
        reader = retained_messages(client.jetstream(), stream, start, end, batch=1000, fetch_bytes=chunk_bytes)
        async for messages in reader:
            for m in messages:
                chunk.append((m.metadata.sequence.stream, m.subject, m.data))
                size += len(m.data)
            if len(chunk) >= chunk_messages or size >= chunk_bytes:
                out.send_bytes(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
                chunk, size = [], 0
        if chunk:
            out.send_bytes(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        await client.close()


async def read_range_in_child(
    servers: list[str], stream: str, start: int, end: int, *, chunk_messages: int, chunk_bytes: int
) -> AsyncIterator[Chunk]:
    """The chunks of ``stream``'s retained ``start..end``, read by a child process, in order.

    Sequences the stream no longer holds are absent. Raises RangeReadError when the child fails;
    the child is ended when the caller stops early."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_child,
        args=(servers, stream, start, end, chunk_messages, chunk_bytes, send),
        name=f"catch-up reader {stream}",
        daemon=True,
    )
    child.start()
    send.close()  # the child holds the sending end: its exit ends our reads
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                data = await loop.run_in_executor(None, receive.recv_bytes)
            except EOFError as error:
                raise RangeReadError(f"the reader of {stream} ended without a word") from error
            if data == _END:
                return
            if data.startswith(b"error:"):
                raise RangeReadError(data[6:].decode(errors="replace"))
            yield pickle.loads(data)  # noqa: S301 - our own child's chunks, over our own pipe
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        await loop.run_in_executor(None, child.join, 10)
