"""Messages of the restart protocol on ``system.control`` (CONTRACTS.md §3, console-owned).

The console sends ``RestartNode``; the runtime answers ``RestartCompleted``, in the envelope or
bare (mistersmith.jetstream.messages reads both).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mistersmith.jetstream.messages import (
    InvalidMessage,
    clean_text,
    envelope,
    open_envelope,
    tagged_variant,
    uuid_field,
)

CONTROL_SUBJECT = "system.control"


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


# SystemMessage's variants without fields: serde writes them as bare JSON strings, not objects.
UNIT_VARIANTS = frozenset({"Startup", "Shutdown"})


def control_variant(message: Any) -> tuple[str, Any]:
    """The variant name and body of a ``system.control`` message, enveloped or bare.

    A unit variant (``"Startup"``, ``"Shutdown"``: the runtime's own notices) comes back with
    body None; any other bare string is refused like any other value that names no variant."""
    payload = open_envelope(message).payload
    if isinstance(payload, str) and payload in UNIT_VARIANTS:
        return payload, None
    return tagged_variant(payload)


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
        restart_id=uuid_field(body, "restart_id"),
        node_id=uuid_field(body, "node_id", required=False),
        success=success,
        error_message=clean_text(error_message[:5000]) if error_message else None,
        new_instance_id=uuid_field(body, "new_instance_id", required=False),
    )
