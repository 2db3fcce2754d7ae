"""The JetStream side of a snapshot: the streams' identity, their retained messages out, and
those messages published again on a restore.

A stream member is a sequence of msgpack records ``[sequence, subject, headers, data,
time_us]`` in stream order: everything needed to publish the message again, plus where and when
it was first stored. Reading uses an ephemeral pull consumer, a batch at a time, so memory stays
flat whatever the stream's size.

Republishing gives the messages new sequences (JetStream numbers them itself). The publisher
keeps the old and new sequence of each message so the restored projections (bridge positions,
the discovery store's stream sequences) can be translated to the new numbering. A message whose
``Nats-Msg-Id`` the server may still remember (stored less than the stream's duplicate window
ago) is published with that header renamed ``Mistersmith-Restored-Msg-Id``, since the server
would otherwise drop it as a duplicate of the very message the restore purged.

A restore never sends the runtime a command. Publishing is a live act: every subscriber sees a
republished message, and NATS has no way to store a message without delivering it. So messages
on the control and command subjects (``system.control``: RestartNode, Shutdown, PoolStatus,
SystemHealth...; ``agent.command``) are left out and counted, and every other subject must be
covered by the stream's own configured subjects (``check_member`` refuses the whole snapshot
otherwise, before any stream is purged): a crafted member cannot publish anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import msgpack
import nats
from nats.errors import Error as NatsError

from mistersmith.jetstream.client import nats_url
from mistersmith.jetstream.client import servers as nats_servers
from mistersmith.jetstream.history import retained_messages
from mistersmith.jetstream.streams import STREAMS, ensure_streams
from mistersmith.operations.snapshots.format import SnapshotError, UnsupportedSnapshot

T = TypeVar("T")
BATCH = 500
PUBLISH_WINDOW = 2000
ACK_TIMEOUT_SECONDS = 30  # one acknowledgement; a whole restore may take as long as its size needs
FETCH_TIMEOUT = 2.0
RESTORED_ID_HEADER = "Mistersmith-Restored-Msg-Id"
# Headers that would make the server refuse or act on a republished message.
DROPPED_HEADERS = ("Nats-Expected-", "Nats-Rollup")
# Subjects whose messages the runtime (or the console's bridge) acts on: never republished.
CONTROL_SUBJECTS = ("system.control", "agent.command")


class StreamsUnavailable(SnapshotError):
    """NATS could not be reached."""


def with_jetstream(work: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
    """Run ``work(js)`` on a connection of its own (commands and views are synchronous)."""

    async def quiet(error: Exception) -> None:
        """The failure is raised as StreamsUnavailable; nats-py's default would log each attempt."""

    async def main() -> T:
        try:
            client = await nats.connect(
                nats_servers(nats_url()), connect_timeout=2, max_reconnect_attempts=1, error_cb=quiet
            )
        except (OSError, NatsError, TimeoutError) as error:
            raise StreamsUnavailable(f"NATS at {nats_url()} is unavailable: {error}") from error
        try:
            return await asyncio.wait_for(work(client.jetstream()), timeout)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except (NatsError, TimeoutError) as error:
        raise StreamsUnavailable(f"NATS at {nats_url()} failed: {error!r}") from error


async def identities(js: Any, names: list[str] | None = None) -> dict[str, dict[str, Any] | None]:
    """Per stream (the contract's by default): when it was created and which sequences it holds
    (None: no such stream). The creation time tells one stream from another of the same name."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in names or list(STREAMS):
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            found[name] = None
            continue
        state = info.state
        found[name] = {
            "created": info.created.isoformat() if info.created else None,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "messages": state.messages,
            "bytes": state.bytes,
        }
    return found


def stream_identities(names: list[str] | None = None) -> dict[str, dict[str, Any] | None] | None:
    """The identities, or None when NATS cannot be reached."""
    try:
        return with_jetstream(lambda js: identities(js, names), timeout=10)
    except StreamsUnavailable:
        return None


async def export_stream(
    js: Any, name: str, target: IO[bytes], max_bytes: int | None, on_message: Callable[[int], object]
) -> dict[str, Any]:
    """Write ``name``'s retained messages to ``target``; returns the member's description.

    With ``max_bytes``, about the newest messages that fit are kept: the start is estimated from
    the stream's average message size, and the write stops at the cap whatever the estimate.
    """
    info = await js.stream_info(name)
    state = info.state
    meta: dict[str, Any] = {"messages": 0, "bytes": 0, "first_seq": None, "last_seq": None, "truncated": False}
    if not state.messages:
        return meta
    start = state.first_seq
    if max_bytes and state.bytes > max_bytes:
        average = state.bytes / state.messages
        start = max(state.first_seq, state.last_seq - int(max_bytes / average) + 1)
        meta["truncated"] = True
    packer = msgpack.Packer(use_bin_type=True)
    reader = retained_messages(js, name, start, state.last_seq, BATCH, FETCH_TIMEOUT)
    async with contextlib.aclosing(reader):  # its consumer is deleted also when the cap stops us early
        async for messages in reader:
            for message in messages:
                size = len(message.data) + len(message.subject)
                if max_bytes and meta["bytes"] + size > max_bytes:
                    meta["truncated"] = True
                    return meta
                sequence = message.metadata.sequence.stream
                stamp = message.metadata.timestamp
                record = [
                    sequence,
                    message.subject,
                    dict(message.headers) if message.headers else None,
                    message.data,
                    int(stamp.timestamp() * 1_000_000) if stamp else None,
                ]
                target.write(packer.pack(record))
                meta["messages"] += 1
                meta["bytes"] += size
                meta["first_seq"] = meta["first_seq"] or sequence
                meta["last_seq"] = sequence
                on_message(1)
    return meta


def records(source: IO[bytes]) -> Iterator[list[Any]]:
    """The records of a stream member, one at a time (UnsupportedSnapshot for bytes that are not)."""
    unpacker = msgpack.Unpacker(source, raw=False, max_buffer_size=64 * 1024 * 1024)
    try:
        yield from unpacker
    except (ValueError, msgpack.UnpackException, TypeError) as error:  # FormatError, StackError, ExtraData...
        raise UnsupportedSnapshot(f"A stream member is not a sequence of msgpack records ({error}).") from error


def subject_matches(subject: str, pattern: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > index
        if index >= len(tokens) or (part != "*" and part != tokens[index]):
            return False
    return len(tokens) == len(wanted)


def is_control(subject: str) -> bool:
    return any(subject == control or subject.startswith(control + ".") for control in CONTROL_SUBJECTS)


def _valid_subject(subject: Any) -> bool:
    if not isinstance(subject, str) or not subject or len(subject) > 1024:
        return False
    return all(
        token and token not in ("*", ">") and not any(c.isspace() for c in token) for token in subject.split(".")
    )


def _valid_record(record: Any) -> bool:
    if not isinstance(record, list) or len(record) != 5:
        return False
    sequence, subject, headers, data, stored_us = record
    return (
        isinstance(sequence, int)
        and not isinstance(sequence, bool)
        and _valid_subject(subject)
        and (
            headers is None
            or (isinstance(headers, dict) and all(isinstance(x, str) for x in (*headers, *headers.values())))
        )
        and isinstance(data, bytes)
        and (stored_us is None or (isinstance(stored_us, int) and not isinstance(stored_us, bool)))
    )


@dataclass
class MemberCheck:
    """What a stream member would publish: messages to republish, control ones left out."""

    messages: int = 0
    skipped: int = 0
    skipped_subjects: dict[str, int] = field(default_factory=dict)


def check_member(name: str, source: IO[bytes], subjects: list[str]) -> MemberCheck:
    """Read a whole stream member and refuse it (SnapshotError) if any record is malformed or its
    subject is not one of ``subjects`` (the stream's configuration); count the control messages a
    restore leaves out. Publishes nothing."""
    check = MemberCheck()
    for index, record in enumerate(records(source)):
        if not _valid_record(record):
            raise UnsupportedSnapshot(
                f"Stream member {name}: record {index} is not [sequence, subject, headers, data, time]."
            )
        subject = record[1]
        if not any(subject_matches(subject, pattern) for pattern in subjects):
            raise SnapshotError(
                f"Stream member {name} holds a message on {subject[:200]!r}, which is not one of the stream's "
                f"subjects ({', '.join(subjects)}); the snapshot was refused and nothing was changed."
            )
        if is_control(subject):
            check.skipped += 1
            check.skipped_subjects[subject] = check.skipped_subjects.get(subject, 0) + 1
        else:
            check.messages += 1
    return check


async def configured_subjects(js: Any, names: list[str]) -> dict[str, list[str]]:
    """Each stream's own subjects: the live configuration, or the contract's for a contract stream
    the restore would create; SnapshotError for a stream that is neither."""
    found = {}
    for name in names:
        try:
            found[name] = list((await js.stream_info(name)).config.subjects or [])
        except nats.js.errors.NotFoundError:
            if name not in STREAMS:
                raise SnapshotError(
                    f"Stream {name} does not exist here and is not one of the console's streams; "
                    "create it first. Nothing was changed."
                ) from None
            found[name] = list(STREAMS[name].subjects or [])
    return found


@dataclass
class Renumbering:
    """Old (snapshot) to new (restored) sequences of one stream, both ascending."""

    old: array = field(default_factory=lambda: array("q"))
    new: array = field(default_factory=lambda: array("q"))
    before_first: int = 0  # the stream's last sequence before the republish
    duplicates: int = 0
    skipped: int = 0  # control and command messages left out (never re-sent live)

    def position(self, old_position: int) -> int:
        """The new position that covers exactly the messages at or below ``old_position``."""
        index = bisect_right(self.old, old_position) - 1
        return self.new[index] if index >= 0 else self.before_first

    def exact(self, old_sequence: int) -> int | None:
        index = bisect_right(self.old, old_sequence) - 1
        return self.new[index] if index >= 0 and self.old[index] == old_sequence else None


def republish_headers(headers: dict[str, str] | None, stored_us: int | None, window_s: float) -> dict | None:
    if not headers:
        return None
    kept = {key: value for key, value in headers.items() if not key.startswith(DROPPED_HEADERS)}
    recent = stored_us is None or stored_us / 1_000_000 > time.time() - window_s - 1
    if recent and "Nats-Msg-Id" in kept:
        kept[RESTORED_ID_HEADER] = kept.pop("Nats-Msg-Id")
    return kept or None


async def stream_is_empty(js: Any, name: str) -> bool:
    try:
        return (await js.stream_info(name)).state.messages == 0
    except nats.js.errors.NotFoundError:
        return True


async def republish(
    js: Any, name: str, source: IO[bytes], *, purge: bool, on_message: Callable[[int], object]
) -> Renumbering:
    """Publish a stream member's messages again, in order, at most PUBLISH_WINDOW unacknowledged.

    The member was checked (check_member) before any stream was purged; control and command
    messages are left out here, and a subject outside the stream's configuration (changed since
    the check) stops the restore before that message is published."""
    await ensure_streams(js)
    subjects = (await configured_subjects(js, [name]))[name]
    if purge:
        await js.purge_stream(name)
    info = await js.stream_info(name)
    window_s = float(info.config.duplicate_window or 0)
    renumbering = Renumbering(before_first=info.state.last_seq)
    pending: deque[tuple[int, asyncio.Future]] = deque()

    async def settle() -> None:
        old_sequence, future = pending.popleft()
        try:  # a NATS that stops acknowledging ends the restore with an error, never a hang
            ack = await asyncio.wait_for(future, ACK_TIMEOUT_SECONDS)
        except TimeoutError:
            raise SnapshotError(
                f"NATS did not acknowledge message {old_sequence} of {name} within {ACK_TIMEOUT_SECONDS} s; "
                "the stream restore stopped there."
            ) from None
        if ack.duplicate:
            renumbering.duplicates += 1
            return
        if ack.stream != name:
            raise SnapshotError(f"A message of {name} landed in stream {ack.stream}; the stream subjects changed.")
        renumbering.old.append(old_sequence)
        renumbering.new.append(ack.seq)
        on_message(1)

    for record in records(source):
        if not _valid_record(record):
            raise UnsupportedSnapshot(f"Stream member {name} holds a malformed record.")
        sequence, subject, headers, data, stored_us = record
        if not any(subject_matches(subject, pattern) for pattern in subjects):
            raise SnapshotError(f"A message of {name} is on {subject[:200]!r}, outside the stream's subjects.")
        if is_control(subject):
            renumbering.skipped += 1
            continue
        future = await js.publish_async(subject, data, headers=republish_headers(headers, stored_us, window_s))
        pending.append((sequence, future))
        if len(pending) >= PUBLISH_WINDOW:
            await settle()
    while pending:
        await settle()
    return renumbering
