"""Agent commands on ``agent.command`` as the runtime reads them, and its CommandResponse answers.

The shapes are the runtime's own (MisterSmith ``src/message/types.rs``): a command arrives as
``MessageEnvelope<AgentCommand>`` and is read strictly, as serde would (the envelope, a ``SystemTime``
timestamp, the variant's required fields), so a console that sends anything else finds out here and
not against the real runtime (which then sends no answer at all: its handler returns before replying).
The answer is ``MessageEnvelope<CommandResponse>`` correlated with the command's ``message_id``:
``{"Success": {message, data}}`` or ``{"Error": {error, code: null}}``, the two variants the runtime's
handler sends (Status and HealthCheck results travel as Success data), with its error texts.
Builders here are pure and return plain dicts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mistersmith.jetstream.messages import InvalidMessage, tagged_variant
from mistersmith.simulator.payloads import envelope

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
    config: dict[str, Any] | None = None  # Spawn's AgentConfig, every field present (serde's own output)


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


def _envelope(message: Any) -> tuple[str, Any]:
    """(message_id, payload) of a decoded ``MessageEnvelope<T>``, read as serde reads it."""
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
    return message_id, message["payload"]


SYSTEM_REQUESTS = ("PoolStatus", "SystemHealth")
SYSTEM_NOTICES = ("Startup", "Shutdown")


def parse_system_message(message: Any) -> tuple[str, str | None]:
    """(variant, reply_to) of a ``MessageEnvelope<SystemMessage>``: ``"Startup"``/``"Shutdown"`` are bare
    strings (unit variants, no reply_to); PoolStatus and SystemHealth carry the subject to answer on.
    InvalidMessage for anything else (the console's RestartNode and RestartCompleted included)."""
    _, payload = _envelope(message)
    if payload in SYSTEM_NOTICES:
        return payload, None
    variant, body = tagged_variant(payload)
    if variant not in SYSTEM_REQUESTS:
        raise InvalidMessage("unknown_variant", str(variant)[:40])
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{variant} is not an object")
    return variant, _field(body, "reply_to", str)


def parse_command(message: Any) -> AgentCommand:
    """The command in a decoded ``MessageEnvelope<AgentCommand>``; InvalidMessage for anything serde refuses."""
    message_id, payload = _envelope(message)
    variant, body = tagged_variant(payload)
    if variant not in VARIANTS:
        raise InvalidMessage("unknown_variant", str(variant)[:40])
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{variant} is not an object")
    if variant == "Spawn":
        config = agent_config(_field(body, "config", dict))
        reply_to = _field(body, "reply_to", str, optional=True)
        return AgentCommand(variant, message_id, None, reply_to=reply_to, config=config)
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


def _unsigned(body: dict, name: str, *, optional: bool) -> int | None:
    value = _field(body, name, int, optional=optional)
    if value is not None and value < 0:
        raise InvalidMessage("bad_field", f"invalid value for `{name}`: expected an unsigned integer")
    return value


def agent_config(body: dict) -> dict[str, Any]:
    """``AgentConfig`` as serde reads it (no defaults: model, enable_mcp and timeout_seconds are required;
    a missing Option is None), returned as serde writes it back: all six fields, nulls explicit."""
    tools = _field(body, "allowed_tools", list, optional=True)
    if tools is not None and not all(isinstance(tool, str) for tool in tools):
        raise InvalidMessage("bad_field", "invalid type for `allowed_tools`")
    return {
        "model": _field(body, "model", str),
        "max_turns": _unsigned(body, "max_turns", optional=True),
        "allowed_tools": tools,
        "enable_mcp": _field(body, "enable_mcp", bool),
        "timeout_seconds": _unsigned(body, "timeout_seconds", optional=False),
        "memory_limit_mb": _unsigned(body, "memory_limit_mb", optional=True),
    }


def success(correlation_id: str | None, data: Any = None, message: str = SUCCESS_MESSAGE) -> dict[str, Any]:
    """``CommandResponse::Success`` in ``MessageEnvelope::new(..).with_correlation(..)``."""
    return envelope({"Success": {"message": message, "data": data}}, correlation_id)


def error(correlation_id: str | None, text: str) -> dict[str, Any]:
    """``CommandResponse::Error``: the AgentOperationError's text; the handler never sets a code."""
    return envelope({"Error": {"error": text, "code": None}}, correlation_id)


def agent_not_found(correlation_id: str, agent_id: uuid.UUID) -> dict[str, Any]:
    """``AgentOperationError::AgentNotFound``: AgentId displays as ``agent-<uuid>``."""
    return error(correlation_id, f"Agent not found: agent-{agent_id}")


def invalid_state(verb: str, state: str, expected: str) -> str:
    """``<Verb> failed: `` + LifecycleError::InvalidState (AgentState displays in lower case)."""
    return f"{verb} failed: Invalid state transition: current={state.lower()}, expected={expected}"


def duration(seconds: float) -> dict[str, int]:
    """Seconds as a Rust ``Duration``."""
    whole = max(0, int(seconds))
    return {"secs": whole, "nanos": int((max(0.0, seconds) - whole) * 1e9) % 1_000_000_000}
