"""What the event log reads from the streams: the snapshot the live tail starts from, and replay
pages. Nothing here touches the database: the streams are the record, read through
:mod:`mistersmith.jetstream.reader` (an ephemeral consumer per read, nothing left behind)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mistersmith.jetstream.reader import MAX_LIMIT, last_message_time, read_latest, read_stream, stream_names
from mistersmith.jetstream.streams import STREAMS
from mistersmith.jetstream.subjects import BadPattern, overlaps

SNAPSHOT_SIZE = 50
DEFAULT_LIMIT = 200
MAX_SEQUENCE = 2**63 - 1  # JetStream sequences are unsigned 64-bit; keep well inside them


@dataclass(frozen=True)
class ReplayQuery:
    """One replay request: a stream, an optional subject pattern, where to start, how many.

    No start (neither sequence nor time) means from the oldest message the stream still retains;
    both at once is refused rather than one silently winning.
    """

    stream: str
    subject: str | None = None
    start_sequence: int | None = None
    start_time: dt.datetime | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ReplayQuery:
        """Read and check a query string; ValueError says what is wrong, in words for the operator."""
        stream = (query.get("stream") or "").strip()
        if stream not in stream_names():
            known = ", ".join(stream_names())
            raise ValueError(
                f"Unknown stream {stream!r}; use one of {known}." if stream else f"Choose a stream: {known}."
            )
        subject = (query.get("subject") or "").strip() or None
        if subject is not None:
            _check_subject(stream, subject)
        sequence_text = (query.get("start_sequence") or "").strip()
        time_text = (query.get("start_time") or "").strip()
        if sequence_text and time_text:
            raise ValueError("Give a start sequence or a start time, not both.")
        return cls(
            stream=stream,
            subject=subject,
            start_sequence=_positive(sequence_text, "The start sequence") if sequence_text else None,
            start_time=_utc_time(time_text) if time_text else None,
            limit=_limit(query.get("limit")),
        )

    def read(self) -> dict[str, Any]:
        """The matching events (oldest first) and where the next page starts.

        ``next_sequence`` is the sequence after the last event returned (a later page, or a later
        visit, goes on from there); with no events it is where this page started, if that was a
        sequence. Raises NatsUnavailable when NATS is away.
        """
        messages = read_stream(
            self.stream,
            subject=self.subject,
            start_sequence=self.start_sequence,
            start_time=self.start_time,
            limit=self.limit,
        )
        next_sequence = messages[-1].sequence + 1 if messages else self.start_sequence
        page: dict[str, Any] = {
            "stream": self.stream,
            "events": [message.as_event() for message in messages],
            "next_sequence": next_sequence,
            "has_more": len(messages) == self.limit,
        }
        if not messages and self.start_time is not None:
            newest = last_message_time(self.stream)
            when = self.start_time.isoformat().replace("+00:00", "Z")
            page["note"] = f"No event in {self.stream} at or after {when}: " + (
                f"its newest is from {newest.isoformat().replace('+00:00', 'Z')}." if newest else "it holds none."
            )
        return page


def snapshot() -> dict[str, Any]:
    """The newest SNAPSHOT_SIZE events across every stream, newest first, and per stream the last
    sequence read, so the live tail drops what the snapshot already shows (every stream is
    named: one with nothing retained is at 0). Raises NatsUnavailable when NATS is away."""
    latest, positions = [], {}
    for stream in stream_names():
        messages = read_latest(stream, count=SNAPSHOT_SIZE)
        positions[stream] = max((message.sequence for message in messages), default=0)
        latest.extend(messages)
    latest.sort(key=lambda message: (message.time, message.sequence), reverse=True)
    return {"events": [message.as_event() for message in latest[:SNAPSHOT_SIZE]], "positions": positions}


def _check_subject(stream: str, subject: str) -> None:
    try:
        stream_subjects = STREAMS[stream].subjects or []
        if not any(overlaps(subject, pattern) for pattern in stream_subjects):
            known = ", ".join(stream_subjects)
            raise ValueError(f"The subject pattern {subject!r} matches nothing in {stream} (its subjects: {known}).")
    except BadPattern as error:
        raise ValueError(f"Bad subject pattern: {error}") from error


def _positive(text: str, name: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_SEQUENCE:
        raise ValueError(f"{name} must be a whole number from 1, not {text!r}.")
    return int(text)


def _limit(text: str | None) -> int:
    text = (text or "").strip()
    if not text:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"The limit must be a whole number from 1 to {MAX_LIMIT}, not {text!r}.")
    return int(text)


def _utc_time(text: str) -> dt.datetime:
    """An ISO time (a datetime-local value like 2025-01-31T13:45, or with seconds); without an
    offset it is UTC, whatever the browser's or the server's zone."""
    try:
        when = dt.datetime.fromisoformat(text)
        return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # an offset can move a valid time out of Python's years 1-9999
        raise ValueError(f"The start time {text!r} is not a time like 2025-01-31T13:45 (UTC).") from None
