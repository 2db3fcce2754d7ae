"""Agent commands on ``agent.command`` as the runtime reads them, and its CommandResponse answers.

The shapes are the runtime's own (MisterSmith ``src/message/types.rs``): a command arrives as
``MessageEnvelope<AgentCommand>`` and is read strictly, as serde would (the envelope, a ``SystemTime``
timestamp, the variant's required fields), so a console that sends anything else finds out here and
not against the real runtime. The answer is ``MessageEnvelope<CommandResponse>`` correlated with the
command's ``message_id``: ``{"Success": {message, data}}`` or ``{"Error": {error, code}}``, the two
variants the runtime's handler sends (Status and HealthCheck results travel as Success data).
Builders here are pure and return plain dicts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mistersmith.messages import InvalidMessage, tagged_variant
from mistersmith.simulator.payloads import system_time

COMMAND_SUBJECT = "agent.command"
VARIANTS = ("Spawn", "Stop", "Pause", "Resume", "Status", "Input", "HealthCheck")
SUCCESS_MESSAGE = "Command executed successfully"  # the runtime's handler says this for every success


@dataclass(frozen=True)
class AgentCommand:
    variant: str
    message_id: str
    agent_id: uuid.UUID | None  # None for Spawn
    graceful: bool = True
    timeout_secs: float | None = None
    reply_to: str | None = None
    content: str | None = None


def _field(body: dict, name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if name not in body:
        if optional:
            return None
        raise InvalidMessage("bad_field", f"missing field `{name}`")
    value = body[name]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidMessage("bad_field", f"invalid type for `{name}`")
    return value


def _duration(value: Any) -> float | None:
    """A Rust ``Duration``: ``{secs, nanos}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"secs", "nanos"}:
        raise InvalidMessage("bad_field", "timeout is not a Duration {secs, nanos}")
    secs, nanos = value["secs"], value["nanos"]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (secs, nanos)) or nanos >= 1_000_000_000:
        raise InvalidMessage("bad_field", "timeout is not a Duration {secs, nanos}")
    return secs + nanos / 1e9


def parse_command(message: Any) -> AgentCommand:
    """The command in a decoded ``MessageEnvelope<AgentCommand>``; InvalidMessage for anything serde refuses."""
    if not isinstance(message, dict):
        raise InvalidMessage("bad_envelope", "not an object")
    for name in ("message_id", "timestamp", "payload"):
        if name not in message:
            raise InvalidMessage("bad_envelope", f"missing field `{name}`")
    try:
        message_id = str(uuid.UUID(str(message["message_id"])))
    except ValueError as error:
        raise InvalidMessage("bad_envelope", "message_id is not a UUID") from error
    stamp = message["timestamp"]
    if not isinstance(stamp, dict) or set(stamp) != {"secs_since_epoch", "nanos_since_epoch"}:
        raise InvalidMessage("bad_envelope", "timestamp is not a SystemTime {secs_since_epoch, nanos_since_epoch}")
    variant, body = tagged_variant(message["payload"])
    if variant not in VARIANTS:
        raise InvalidMessage("unknown_variant", str(variant)[:40])
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{variant} is not an object")
    if variant == "Spawn":
        _field(body, "config", dict)
        return AgentCommand(variant, message_id, None, reply_to=_field(body, "reply_to", str, optional=True))
    try:
        agent_id = uuid.UUID(_field(body, "agent_id", str))
    except ValueError as error:
        raise InvalidMessage("bad_field", "agent_id is not a UUID") from error
    if variant == "Stop":
        graceful = _field(body, "graceful", bool)
        return AgentCommand(variant, message_id, agent_id, graceful, _duration(body.get("timeout")))
    if variant in ("Status", "HealthCheck"):
        return AgentCommand(variant, message_id, agent_id, reply_to=_field(body, "reply_to", str))
    if variant == "Input":
        return AgentCommand(variant, message_id, agent_id, content=_field(body, "content", str))
    return AgentCommand(variant, message_id, agent_id)


def _answer(payload: dict[str, Any], correlation_id: str | None) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "timestamp": system_time(),
        "source_agent": None,
        "target_agent": None,
        "correlation_id": correlation_id,
        "payload": payload,
    }


def success(correlation_id: str | None, data: Any = None, message: str = SUCCESS_MESSAGE) -> dict[str, Any]:
    return _answer({"Success": {"message": message, "data": data}}, correlation_id)


def error(correlation_id: str | None, text: str, code: int | None = None) -> dict[str, Any]:
    return _answer({"Error": {"error": text, "code": code}}, correlation_id)


def duration(seconds: float) -> dict[str, int]:
    """Seconds as a Rust ``Duration``."""
    whole = max(0, int(seconds))
    return {"secs": whole, "nanos": int((max(0.0, seconds) - whole) * 1e9) % 1_000_000_000}
