"""Reading the runtime's messages: JSON, the optional envelope, both timestamp forms, tagged variants.

Every parser in the console builds on these, and none of them lets anything but
:class:`InvalidMessage` escape; its ``reason`` is a short label the bridge counts by.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_DEPTH = 64


class InvalidMessage(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_json(data: bytes) -> Any:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidMessage("not_json", str(error)[:200]) from error
    if _depth(value) > MAX_DEPTH:
        raise InvalidMessage("too_deep", f"nested deeper than {MAX_DEPTH}")
    return value


def _depth(value: Any) -> int:
    """Nesting depth without recursion (a hostile message may nest thousands of levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(current, dict):
            stack.extend((child, depth + 1) for child in current.values())
        elif isinstance(current, list):
            stack.extend((child, depth + 1) for child in current)
    return deepest


@dataclass(frozen=True)
class Envelope:
    message_id: str | None
    timestamp: datetime | None
    source_agent: str | None
    target_agent: str | None
    correlation_id: str | None
    payload: Any


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 string or the runtime's ``{secs_since_epoch, nanos_since_epoch}``, as aware UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as error:
            raise InvalidMessage("bad_timestamp", value[:64]) from error
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, dict):
        seconds, nanos = value.get("secs_since_epoch"), value.get("nanos_since_epoch", 0)
        if isinstance(seconds, int) and isinstance(nanos, int) and not isinstance(seconds, bool):
            try:
                return datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)
            except (OverflowError, OSError, ValueError) as error:
                raise InvalidMessage("bad_timestamp", "out of range") from error
    raise InvalidMessage("bad_timestamp", type(value).__name__)


def _optional_text(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage("bad_field", f"{key} is not a string")
    return value


def open_envelope(message: Any) -> Envelope:
    """The envelope's fields; a bare payload comes back as an envelope with only the payload."""
    if isinstance(message, dict) and "payload" in message and "message_id" in message:
        timestamp = message.get("timestamp")
        return Envelope(
            message_id=_optional_text(message, "message_id"),
            timestamp=parse_timestamp(timestamp) if timestamp is not None else None,
            source_agent=_optional_text(message, "source_agent"),
            target_agent=_optional_text(message, "target_agent"),
            correlation_id=_optional_text(message, "correlation_id"),
            payload=message["payload"],
        )
    return Envelope(None, None, None, None, None, message)


def tagged_variant(payload: Any) -> tuple[str, Any]:
    """The variant name and body of an externally tagged value (one key naming the variant)."""
    if not isinstance(payload, dict) or len(payload) != 1:
        raise InvalidMessage("not_externally_tagged")
    ((name, body),) = payload.items()
    return name, body


def uuid_field(body: dict, field: str, *, required: bool = True) -> uuid.UUID | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidMessage("bad_field", f"{field} is not a UUID")
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise InvalidMessage("bad_field", f"{field} is not a UUID") from error


def envelope(payload: Any, *, message_id: str, correlation_id: str | None = None) -> dict[str, Any]:
    """Wrap a payload the way the runtime does, with an RFC 3339 timestamp."""
    return {
        "message_id": message_id,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": correlation_id,
        "payload": payload,
    }
