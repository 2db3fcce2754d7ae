"""One readable line for a supervision or system message: what the event log shows beside a
message's excerpt and what the dashboard's latest events say (CONTRACTS §3).

Shapes: task allocation on ``supervision.tasks.allocation.<event>`` ({event_type, task_id,
timestamp, allocation_details{requested_capabilities, assigned_agent, rejection_reasons,
alternative_agents, priority, estimated_duration_ms}, coordination_metadata{...}}), lifecycle on
``supervision.agent.<id>.lifecycle.<event>``, health on ``supervision.agent.<id>.health.<check>``,
errors on ``supervision.error.<severity>.<component>``, the console's own
``supervision.node.<id>.<what>``; on ``system.control`` the runtime's SystemMessage variants and
the console's restart protocol. A message of another shape gets None (the excerpt says it all).
"""

from __future__ import annotations

from typing import Any

from mistersmith.jetstream.messages import InvalidMessage, decode_json, open_envelope

MAX_ITEMS = 5  # reasons or capabilities named in a line; the rest counted


def _text(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listed(values: Any) -> str:
    if not isinstance(values, list) or not values:
        return ""
    shown = ", ".join(_text(value, 80) for value in values[:MAX_ITEMS])
    return shown + (f" and {len(values) - MAX_ITEMS} more" if len(values) > MAX_ITEMS else "")


def task_allocation(subject: str, body: dict[str, Any]) -> str:
    """``Task 42 assigned to agent-7 (priority High)``, ``Task 42 rejected: no capacity, busy``."""
    event = body.get("event_type") or subject.rsplit(".", 1)[-1]
    event = _text(event, 40)
    task = _text(body.get("task_id", "?"), 80)
    details = body.get("allocation_details") if isinstance(body.get("allocation_details"), dict) else {}
    line = f"Task {task} {event.lower()}"
    agent = details.get("assigned_agent")
    if agent:
        line += (
            f" to {_text(agent, 80)}" if event.lower() in ("assigned", "redistributed") else f" ({_text(agent, 80)})"
        )
    reasons = _listed(details.get("rejection_reasons"))
    if reasons:
        line += f": {reasons}"
    alternatives = _listed(details.get("alternative_agents"))
    if alternatives and event.lower() in ("rejected", "redistributed", "failed", "timeout"):
        line += f"; alternatives {alternatives}"
    capabilities = _listed(details.get("requested_capabilities"))
    if capabilities and event.lower() == "requested":
        line += f" needing {capabilities}"
    if details.get("priority") is not None:
        line += f" (priority {_text(details['priority'], 20)})"
    return line


def supervision(subject: str, body: Any) -> str | None:
    parts = subject.split(".")
    if not isinstance(body, dict):
        return None
    if parts[1:3] == ["tasks", "allocation"]:
        return task_allocation(subject, body)
    if len(parts) >= 5 and parts[1] == "agent" and parts[3] == "lifecycle":
        moved = ""
        if body.get("previous_state") or body.get("new_state"):
            moved = f": {_text(body.get('previous_state') or '?', 30)} → {_text(body.get('new_state') or '?', 30)}"
        return f"Agent {_text(parts[2], 60)} {_text(parts[4], 30)}{moved}"
    if len(parts) >= 5 and parts[1] == "agent" and parts[3] == "health":
        line = f"Agent {_text(parts[2], 60)} health {_text(parts[4], 30)}"
        if isinstance(body.get("health_score"), int | float):
            line += f": score {body['health_score']:.2f}"
        alerts = body.get("alerts")
        if isinstance(alerts, list) and alerts:
            line += f", {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
        return line
    if len(parts) >= 4 and parts[1] == "error":
        detail = body.get("message") or body.get("detail") or body.get("error")
        line = f"{_text(parts[2], 20).capitalize()} error in {_text('.'.join(parts[3:]), 60)}"
        return line + (f": {_text(detail)}" if detail else "")
    if len(parts) >= 4 and parts[1] == "node":
        return f"Node {_text(parts[2], 60)}: {_text(' '.join(parts[3:]), 60).replace('_', ' ')}"
    return None


def control(body: Any) -> str | None:
    """The runtime's SystemMessage variants and the console's restart protocol on system.control."""
    if isinstance(body, str):
        return {"Startup": "Runtime startup", "Shutdown": "Runtime shutdown"}.get(body)
    if not isinstance(body, dict) or len(body) != 1:
        return None
    ((name, fields),) = body.items()
    fields = fields if isinstance(fields, dict) else {}
    if name in ("SystemHealth", "PoolStatus"):
        return f"{name} request (answer to {_text(fields.get('reply_to', '?'), 60)})"
    if name == "RestartNode":
        return f"Restart requested for node {_text(fields.get('node_name') or fields.get('node_id'), 60)}"
    if name == "RestartCompleted":
        outcome = "succeeded" if fields.get("success") else "failed"
        return f"Restart {outcome} on node {_text(fields.get('node_id'), 60)}"
    return None


def summarize(stream: str, subject: str, data: bytes) -> str | None:
    """The line for a SUPERVISION_EVENTS or SYSTEM_EVENTS message, None for others or unreadable ones."""
    if stream not in ("SUPERVISION_EVENTS", "SYSTEM_EVENTS"):
        return None
    try:
        body = open_envelope(decode_json(data)).payload
    except InvalidMessage:
        return None
    if stream == "SUPERVISION_EVENTS":
        return supervision(subject, body)
    if subject == "system.control":
        return control(body)
    return None
