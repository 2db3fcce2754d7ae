"""Messages of the restart protocol on ``system.control`` (CONTRACTS.md §3, console-owned).

The console sends ``RestartNode``; the runtime answers ``RestartCompleted``. Both travel in the
runtime's envelope; an answer may also arrive bare, and its timestamp in either of the two forms
the runtime writes. Parsing never raises anything but :class:`InvalidMessage`, whose ``reason``
is a short, countable label.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CONTROL_SUBJECT = "system.control"


class InvalidMessage(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def envelope(payload: dict[str, Any], *, message_id: str, correlation_id: str | None = None) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": correlation_id,
        "payload": payload,
    }


def restart_node_command(
    *,
    restart_id: uuid.UUID,
    node_id: uuid.UUID,
    node_name: str,
    attempt: int,
    delay_ms: int,
    requested_by: str,
    reason: str,
) -> dict[str, Any]:
    """The RestartNode envelope; its message id is the restart's id, so a retry is de-duplicated."""
    body = {
        "RestartNode": {
            "restart_id": str(restart_id),
            "node_id": str(node_id),
            "node_name": node_name,
            "attempt": attempt,
            "delay_ms": delay_ms,
            "requested_by": requested_by,
            "reason": reason,
        }
    }
    return envelope(body, message_id=str(restart_id), correlation_id=str(restart_id))


@dataclass(frozen=True)
class RestartCompleted:
    restart_id: uuid.UUID
    node_id: uuid.UUID | None
    success: bool
    error_message: str | None
    new_instance_id: uuid.UUID | None


def decode_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidMessage("not_json", str(error)[:200]) from error


def unwrap(message: Any) -> Any:
    """The payload of an envelope, or the message itself when it came bare."""
    if isinstance(message, dict) and "payload" in message and "message_id" in message:
        return message["payload"]
    return message


def control_variant(message: Any) -> tuple[str, Any]:
    """The variant name and body of an externally tagged ``system.control`` message."""
    payload = unwrap(message)
    if not isinstance(payload, dict) or len(payload) != 1:
        raise InvalidMessage("not_externally_tagged")
    ((name, body),) = payload.items()
    return name, body


def _uuid(value: Any, field: str, *, required: bool) -> uuid.UUID | None:
    if value is None and not required:
        return None
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError) as error:
        raise InvalidMessage("bad_field", f"{field} is not a UUID") from error


def parse_restart_completed(body: Any) -> RestartCompleted:
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", "RestartCompleted is not an object")
    success = body.get("success")
    if not isinstance(success, bool):
        raise InvalidMessage("bad_field", "success is not a boolean")
    error_message = body.get("error_message")
    if error_message is not None and not isinstance(error_message, str):
        raise InvalidMessage("bad_field", "error_message is not a string")
    return RestartCompleted(
        restart_id=_uuid(body.get("restart_id"), "restart_id", required=True),
        node_id=_uuid(body.get("node_id"), "node_id", required=False),
        success=success,
        error_message=error_message[:5000] if error_message else None,
        new_instance_id=_uuid(body.get("new_instance_id"), "new_instance_id", required=False),
    )
