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

from typing import Any

from agents.events import parse_agent_event, subject_agent_id
from agents.texts import PREVIEW_CHARS, TextNotFound, preview, stored_event
from mistersmith.jetstream.messages import InvalidMessage, decode_json, excerpt
from mistersmith.jetstream.reader import StreamMessage, read_latest

STREAM = "AGENT_EVENTS"
TEXT_LIMIT = PREVIEW_CHARS  # the bridge's frames cut texts there too


def latest_messages(subject: str, count: int = 100) -> list[StreamMessage]:
    """The newest ``count`` messages on ``subject`` in AGENT_EVENTS, oldest first.

    Raises NatsUnavailable when NATS is away.
    """
    return read_latest(STREAM, subject=subject, count=count)


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
    data = message.data
    if message.truncated:  # the reader keeps 64 KiB of each message; an Output may hold up to 1 MiB
        try:
            data = stored_event(message.sequence).data or b""
        except TextNotFound:
            event.update(kind="invalid", text=f"left the stream: {excerpt(message.data)}")
            return event
    try:
        parsed = parse_agent_event(decode_json(data), subject_agent=subject_agent_id(message.subject))
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
    event.update(preview(parsed.text))  # text (the preview) and text_length (the whole)
    if parsed.occurred_at is not None:
        event["at"] = parsed.occurred_at.isoformat()
    return event


def agent_history(agent_id: Any, count: int = 100) -> list[dict[str, Any]]:
    """The agent's newest ``count`` events as page events, oldest first (NatsUnavailable when NATS is away)."""
    return [history_event(message) for message in latest_messages(f"agent.{agent_id}.>", count)]
