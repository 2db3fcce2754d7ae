"""Reading the runtime's messages: JSON, the optional envelope, both timestamp forms, tagged variants.

Every parser in the console builds on these, and none of them lets anything but
:class:`InvalidMessage` escape; its ``reason`` is a short label the bridge counts by.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_DEPTH = 64
EXCERPT_LENGTH = 500


def excerpt(data: bytes) -> str:
    """The start of a payload as text, whatever its bytes (invalid UTF-8 and NUL become U+FFFD:
    PostgreSQL refuses NUL in text, and a dead letter holding one could not be recorded)."""
    return data[:EXCERPT_LENGTH].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def readable_payload(data: bytes) -> dict[str, Any]:
    """A payload for a person to read: ``{"text": ..., "json": True}`` pretty-printed (indent 2, the
    keys in the message's order, non-ASCII as it is) when it is JSON the console reads, else
    ``{"text": its bytes as text, "json": False, "error": why not}``. A page puts ``text`` in the
    document as text, never as HTML."""
    try:
        value = decode_json(data)
    except InvalidMessage as error:
        return {"text": excerpt_all(data), "json": False, "error": str(error)}
    return {"text": json.dumps(value, indent=2, ensure_ascii=False), "json": True}


def excerpt_all(data: bytes) -> str:
    """All of a payload as text, as :func:`excerpt` reads its start."""
    return bytes(data).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class InvalidMessage(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_json(data: bytes | str) -> Any:
    """A message's JSON value, or InvalidMessage: the bytes must be UTF-8 (RFC 8259) and the value
    must be what the runtime's serde_json could have written.

    Refused: invalid UTF-8, bad JSON, nesting deeper than MAX_DEPTH (checked without recursion),
    integers too long for Python to read (over 4,300 digits: a ValueError, not a JSONDecodeError),
    and NaN or infinities (``NaN``, ``Infinity``, ``1e999``: serde_json never writes them, and a
    frame holding one would be JSON no browser can read). Strings come back storable: a NUL or a
    lone surrogate (both only possible through a ``\\u`` escape) becomes U+FFFD, since PostgreSQL
    refuses NUL in text and jsonb and a lone surrogate cannot be encoded as UTF-8.
    """
    if not isinstance(data, str):
        data = bytes(data)
        if _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZERO):
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # refused or unusual: the standard decoder decides, and says why in its words
            else:
                return _bounded_and_storable(value, data.count(b"[") + data.count(b"{"), b"\\u" in data)
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
        if text.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise InvalidMessage("not_json", str(error)[:200]) from error
    return _bounded_and_storable(value, text.count("[") + text.count("{"), "\\u" in text)


# orjson reads JSON about three times faster than the json module (a catch-up decodes a million
# messages), and refuses all the json module refuses here (bad UTF-8, a BOM, NaN, infinities, lone
# surrogates): a message it refuses goes to the json module, whose errors the reasons quote. What it
# reads differently are integers beyond 64 bits (as floats): a run of 19 digits sends a message to
# the json module, which keeps them exact (found by mapping every digit to 0 and looking for 19 of
# them: ten times faster than a regular expression over a message's bytes).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_NINETEEN_DIGITS = b"0" * 19


def _bounded_and_storable(value: Any, brackets: int, escaped: bool) -> Any:
    """Nesting needs an opening bracket per level: a text with few of them (every message the runtime
    sends) cannot be too deep, and counting them costs a fraction of walking the value. NUL and
    surrogates cannot appear in JSON text but as ``\\u`` escapes."""
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidMessage("too_deep", f"nested deeper than {MAX_DEPTH}")
    return _storable(value) if escaped else value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise InvalidMessage("not_json", f"{text[:40]} is not a finite JSON number")
    return value


def _no_constant(name: str) -> float:
    raise InvalidMessage("not_json", f"{name} is not a JSON number")


# One decoder for every message: json.loads with hooks builds a new JSONDecoder on each call (a few
# microseconds per message, for a bridge catching up on a million).
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def _depth(value: Any) -> int:
    """Nesting depth without recursion (a hostile message may nest thousands of levels); a float
    that is not finite is refused on the way."""
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
        elif isinstance(current, float) and not math.isfinite(current):
            raise InvalidMessage("not_json", f"{current} is not a JSON number")
    return deepest


UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD: text PostgreSQL and UTF-8 accept."""
    return UNSTORABLE.sub("\ufffd", value)


def _storable(value: Any) -> Any:
    """A decoded value with every string (keys too) made storable (depth already bounded)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): _storable(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_storable(child) for child in value]
    return value


@dataclass(frozen=True)
class Envelope:
    message_id: str | None
    timestamp: datetime | None
    source_agent: str | None
    target_agent: str | None
    correlation_id: str | None
    payload: Any


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 string or the runtime's ``{secs_since_epoch, nanos_since_epoch}``, as aware UTC.

    A string's offset is converted to UTC here: ``0001-01-01T00:00:00+01:00`` is a valid string
    whose instant lies before year 1, which Python cannot hold in UTC (it would fail later, when
    the database layer converts it) and PostgreSQL would store as a BC date no reader can load.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError) as error:
            raise InvalidMessage("bad_timestamp", value[:64]) from error
    if isinstance(value, dict):
        seconds, nanos = value.get("secs_since_epoch"), value.get("nanos_since_epoch", 0)
        integers = isinstance(seconds, int) and isinstance(nanos, int)
        if integers and not isinstance(seconds, bool) and not isinstance(nanos, bool):
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


# The same few thousand agent ids come in every message (a catch-up reads a million): parsed once
# each. UUIDs are immutable; a bad id raises, and a raise is not cached.
_uuid = functools.lru_cache(maxsize=1 << 14)(uuid.UUID)


def uuid_field(body: dict, field: str, *, required: bool = True) -> uuid.UUID | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidMessage("bad_field", f"{field} is not a UUID")
    try:
        return _uuid(value)
    except ValueError as error:
        raise InvalidMessage("bad_field", f"{field} is not a UUID") from error


def system_time() -> dict[str, int]:
    """Now as Rust's ``SystemTime`` serialises: ``{secs_since_epoch, nanos_since_epoch}``, the only
    timestamp form the runtime's own parsers (``MessageEnvelope``) accept."""
    ns = time.time_ns()
    return {"secs_since_epoch": ns // 1_000_000_000, "nanos_since_epoch": ns % 1_000_000_000}


def envelope(
    payload: Any,
    *,
    message_id: str,
    correlation_id: str | None = None,
    source_agent: str | None = None,
    target_agent: str | None = None,
) -> dict[str, Any]:
    """Wrap a payload as the runtime's ``MessageEnvelope`` serialises: every key present (null when
    unset, as serde writes Option::None) and a SystemTime timestamp, so the runtime can read
    whatever the console sends."""
    return {
        "message_id": message_id,
        "timestamp": system_time(),
        "source_agent": source_agent,
        "target_agent": target_agent,
        "correlation_id": correlation_id,
        "payload": payload,
    }
