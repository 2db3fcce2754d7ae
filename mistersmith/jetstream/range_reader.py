"""Reading a stream's retained range: in order, whole messages, through an ephemeral consumer
without acks (``retained_messages``), and in a process of its own for a bridge's first-start
catch-up (``read_range_in_child``).

Reading a message through nats-py's ``fetch`` costs about as much Python time as parsing and
applying it: for every message it makes a uuid, a task and a ``wait_for`` (nats-py 2.x
``Subscription.next_msg``). The child (``pulled_range``) asks the consumer itself instead: one pull
request per batch to a subscription with a callback, which nats-py runs for every message without a
task, the stream sequence read straight from the reply subject: about a third of the CPU per
message. A catch-up of a million retained events is read in that child process, which hands whole
chunks ``[(sequence, subject, data), ...]`` over a pipe (one pickle per chunk), while the bridge's
process parses and applies: the two work on both cores, and each chunk is read ahead of the one
being applied by at most the pipe's buffer plus one chunk.

This module imports no Django and no app: the child (started with ``spawn``, a fresh interpreter,
since forking a process with threads and an event loop is unsafe) loads only it and nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import pickle
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

Chunk = list[tuple[int, str, bytes]]
FETCH_TIMEOUT = 5.0
_END = b"end"


def _reader_config(start: int) -> ConsumerConfig:
    """The ephemeral consumer of a retained-range read: from ``start``, in memory, no acks."""
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )


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
    info = await js.add_consumer(stream, _reader_config(start))
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


def _position(reply: str) -> tuple[int, int] | None:
    """(stream sequence, messages pending after it) from a JetStream message's reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or the form with a
    domain and account hash and 12 tokens): what nats-py's ``Msg.metadata`` reads, without building
    it. None for a reply of another shape."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    try:
        if len(tokens) == 9:
            return int(tokens[5]), int(tokens[8])
        if len(tokens) >= 11:
            return int(tokens[Msg.Ack.StreamSeq]), int(tokens[Msg.Ack.NumPending])
    except ValueError:
        return None
    return None


class _Pull:
    """One pull request's answer, collected by a subscription callback (see ``pulled_range``)."""

    def __init__(self, inbox: str, batch: int) -> None:
        self.inbox = inbox
        self.left = batch
        self.items: Chunk = []
        self.pending: int | None = None  # after the newest message; 0: the stream holds no more
        self.ended = asyncio.Event()  # the batch is full, the server ended the request, or it holds no more


async def pulled_range(
    client: Any,
    stream: str,
    start: int,
    end: int,
    *,
    batch: int = 1000,
    timeout: float = FETCH_TIMEOUT,
    fetch_bytes: int | None = None,
) -> AsyncIterator[Chunk]:
    """The messages of ``stream`` from ``start`` to ``end`` as ``(sequence, subject, data)``, in
    order, at most ``batch`` at a time: what ``retained_messages`` reads, without building a ``Msg``
    metadata or a task per message (the catch-up's child reads a million; the module says why).

    The same ephemeral consumer (no acks) is asked by plain pull requests, one at a time, each with
    an inbox of its own (a late status of an earlier request cannot end a later one). A request
    ends when its batch is full, when the server answers with a status (408: ``timeout`` passed,
    404, 409), or when a message says nothing is pending after it. ``fetch_bytes`` bounds a
    request's bytes as in ``retained_messages``. Sequences the stream no longer holds are absent;
    nothing arriving within ``timeout`` ends the read. Headers are not kept (the catch-up applies
    data only). The consumer is deleted when the iteration ends, also when the caller stops early.
    """
    js = client.jetstream()
    info = await js.add_consumer(stream, _reader_config(start))
    prefix = client.new_inbox()
    current: _Pull | None = None

    async def on_message(message: Msg) -> None:
        pull = current
        if pull is None or pull.ended.is_set():
            return
        if message.headers and message.headers.get("Status"):  # a status: 100 (heartbeat) goes on
            if message.subject == pull.inbox and message.headers["Status"] != "100":
                pull.ended.set()
            return
        position = _position(message.reply)
        if position is None:
            return
        pull.items.append((position[0], message.subject, message.data))
        pull.pending = position[1]
        pull.left -= 1
        if pull.left <= 0 or position[1] == 0 or position[0] >= end:
            pull.ended.set()

    subscription = await client.subscribe(f"{prefix}.*", cb=on_message)
    try:
        if info.num_pending == 0:
            return
        size = batch if fetch_bytes is None else min(batch, 64)  # the first requests tell the mean size
        read_bytes = read_count = requests = 0
        request_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{info.name}"
        expires = int(timeout * 1_000_000_000)
        while True:
            requests += 1
            current = pull = _Pull(f"{prefix}.{requests}", size)
            body = json.dumps({"batch": size, "expires": expires}).encode()
            try:
                await client.publish(request_subject, body, reply=pull.inbox)
                await asyncio.wait_for(pull.ended.wait(), timeout + 1.0)
            except (TimeoutError, NoRespondersError):
                pass  # no answer at all: what arrived is kept, the read ends below
            current = None
            items = pull.items
            if not items:
                return  # nothing more within the timeout: the rest of the range is gone
            if fetch_bytes is not None:
                read_bytes += sum(len(item[2]) + len(item[1]) for item in items)
                read_count += len(items)
                size = max(1, min(batch, fetch_bytes * read_count // max(1, read_bytes)))
            within = [item for item in items if item[0] <= end]
            if within:
                yield within
            if items[-1][0] >= end or pull.pending == 0:
                return
    finally:
        current = None
        with contextlib.suppress(NatsError):
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
        async for items in pulled_range(client, stream, start, end, batch=1000, fetch_bytes=chunk_bytes):
            chunk += items
            size += sum(len(item[2]) for item in items)
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
