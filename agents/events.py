"""Agent events on ``agent.{uuid}.events`` (CONTRACTS.md §3), parsed and validated.

Externally tagged JSON, in the envelope or bare: Spawned, StateChanged, Terminated, Error,
Output, Heartbeat. A parser returns an :class:`AgentEvent` or raises InvalidMessage with a
countable reason; nothing else escapes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.lifecycle import STATE_NAMES, AgentState
from mistersmith.jetstream.messages import (
    InvalidMessage,
    clean_text,
    open_envelope,
    parse_timestamp,
    tagged_variant,
    uuid_field,
)

VARIANTS = ("Spawned", "StateChanged", "Terminated", "Error", "Output", "Heartbeat")
TERMINATION_REASONS = ("graceful_stop", "forced_stop")
MAX_NAME = 255
INT_MAX = 2**31 - 1  # the agents table's INTEGER columns


@dataclass(frozen=True)
class AgentEvent:
    kind: str
    agent_id: uuid.UUID
    message_id: str | None = None
    occurred_at: datetime | None = None
    old_state: str | None = None
    new_state: str | None = None
    reason: str | None = None
    text: str | None = None  # Error's error, Output's content
    config: dict[str, Any] = field(default_factory=dict)


def _state(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or value not in STATE_NAMES:
        raise InvalidMessage("bad_state", f"{key}={str(value)[:40]}")
    return value


def _text(body: dict, key: str) -> str:
    """Output's content or Error's text, whole: the runtime sends whole agent replies there, and the
    stream's maximum message size (AGENT_EVENTS: 1 MiB) is the only bound. Pages show a preview and
    fetch the rest on demand (agents/texts.py)."""
    value = body.get(key)
    if not isinstance(value, str):
        raise InvalidMessage("bad_field", f"{key} is not a string")
    return clean_text(value)


# AgentConfig's Option fields: an explicit null is the runtime's None (max_turns: no limit,
# allowed_tools: every tool, memory_limit_mb: no limit) and must stay NULL, not become a default.
NULLABLE_CONFIG = frozenset({"max_turns", "allowed_tools", "memory_limit_mb"})


def _config(value: Any) -> dict[str, Any]:
    """Spawned's AgentConfig (and the console's ``name``), with every known field the projection
    stores kept only when the agents table can hold it: a whole number from 1 to INT_MAX, a bool,
    a list of strings, a string without NUL (at most MAX_NAME characters for the name and model),
    or an explicit null for the Option fields (NULLABLE_CONFIG). A field that fails is dropped, and
    so is a missing one, so the column keeps its default (the runtime's own defaults); an
    out-of-range number written as it is would fail the bridge's whole batch in PostgreSQL."""
    if not isinstance(value, dict):
        raise InvalidMessage("bad_field", "config is not an object")
    config: dict[str, Any] = {}
    for key, item in value.items():
        if item is None and key in NULLABLE_CONFIG:
            config[key] = None
        elif key in ("max_turns", "timeout_seconds", "memory_limit_mb"):
            if isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= INT_MAX:
                config[key] = item
        elif key == "enable_mcp":
            if isinstance(item, bool):
                config[key] = item
        elif key == "allowed_tools":
            if isinstance(item, list) and all(isinstance(tool, str) for tool in item):
                config[key] = [clean_text(tool[:MAX_NAME]) for tool in item]
        elif key in ("name", "model"):
            if isinstance(item, str) and item.strip():
                config[key] = clean_text(item[:MAX_NAME])
        else:
            config[key] = item
    return config


def parse_agent_event(message: Any, *, subject_agent: str | None = None) -> AgentEvent:
    """An agent event from a decoded message; ``subject_agent`` is the uuid in the subject, if any."""
    wrapped = open_envelope(message)
    kind, body = tagged_variant(wrapped.payload)
    if kind not in VARIANTS:
        raise InvalidMessage("unknown_variant", kind[:40])
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{kind} is not an object")
    agent_id = uuid_field(body, "agent_id")
    if subject_agent is not None and str(agent_id) != subject_agent:
        raise InvalidMessage("subject_mismatch", f"subject agent {subject_agent[:40]} carries {agent_id}")
    event: dict[str, Any] = {"kind": kind, "agent_id": agent_id, "message_id": wrapped.message_id}
    event["occurred_at"] = wrapped.timestamp
    if kind == "StateChanged":
        event.update(old_state=_state(body, "old_state"), new_state=_state(body, "new_state"))
    elif kind == "Terminated":
        reason = body.get("reason")
        if reason not in TERMINATION_REASONS:
            raise InvalidMessage("bad_field", "reason is not graceful_stop or forced_stop")
        event["reason"] = reason
    elif kind == "Error":
        event["text"] = _text(body, "error")
    elif kind == "Output":
        event["text"] = _text(body, "content")
    elif kind == "Heartbeat":
        event["occurred_at"] = parse_timestamp(body.get("timestamp"))
    elif kind == "Spawned":
        # The runtime publishes Spawned only after Agent::spawn succeeded: the agent is Running.
        event.update(config=_config(body.get("config", {})), new_state=AgentState.RUNNING.value)
    return AgentEvent(**event)


def subject_agent_id(subject: str) -> str | None:
    """The agent uuid of ``agent.{uuid}.events`` (None for other shapes)."""
    parts = subject.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "agent" else None
