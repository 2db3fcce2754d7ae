"""The runtime's messages, shaped as its serde serialisation writes them (CONTRACTS.md §3).

Enums are externally tagged (``{"StateChanged": {...}}``), a Rust ``SystemTime`` becomes
``{secs_since_epoch, nanos_since_epoch}``, a chrono timestamp an RFC 3339 string, ``None`` a null.
Builders here are pure (randomness comes in as ``rng``) and return ``(subject, body)``.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.lifecycle import AgentState as S
from mistersmith.jetstream.messages import InvalidMessage
from mistersmith.simulator import texts

Message = tuple[str, dict[str, Any]]
MAX_DELAY_MS = 300_000

LIFECYCLE_EVENTS = {
    S.CREATED: "created",
    S.STARTING: "initialized",
    S.PAUSED: "paused",
    S.STOPPING: "terminating",
    S.TERMINATED: "terminated",
    S.ERROR: "error",
}
HEALTH_CHECKS = {
    "heartbeat": "Heartbeat",
    "resource_usage": "ResourceUsage",
    "capacity": "Capacity",
    "performance": "Performance",
    "connectivity": "Connectivity",
}
FAILURES = {  # failure_reason -> (details, severity of the supervision.error event)
    "Crash": (["process exited with status 137 (killed)", "claude CLI exited with status 1"], "high"),
    "HeartbeatTimeout": (["no heartbeat for 30 s", "heartbeat missed 3 times in a row"], "medium"),
    "ResourceExhaustion": (["memory limit of 512 MB exceeded", "too many open files (1024)"], "high"),
    "UnhandledError": (["unhandled error: tool call timed out after 300 s"], "medium"),
    "ExternalFailure": (["upstream API returned 529 overloaded", "MCP server connection refused"], "low"),
}
STACK_TRACE = "thread 'agent-worker' panicked at src/runtime/process.rs:212:9\nstack backtrace:\n  0: mistersmith::run"
RESTART_ERRORS = ["agent did not come back: spawn timed out after 30 s", "claude CLI not found on host", "port in use"]


@dataclass(frozen=True)
class RestartCommand:
    restart_id: str
    node_id: uuid.UUID
    delay_ms: int


@dataclass(frozen=True)
class Failure:
    reason: str
    detail: str
    severity: str
    stack_trace: str | None


def rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def system_time() -> dict[str, int]:
    ns = time.time_ns()
    return {"secs_since_epoch": ns // 1_000_000_000, "nanos_since_epoch": ns % 1_000_000_000}


def envelope(payload: Any, correlation_id: str | None = None) -> dict[str, Any]:
    """``MessageEnvelope::new(payload)`` as serde writes it: every key present, SystemTime, nulls explicit."""
    return {
        "message_id": str(uuid.uuid4()),
        "timestamp": system_time(),
        "source_agent": None,
        "target_agent": None,
        "correlation_id": correlation_id,
        "payload": payload,
    }


def runtime_agent_event(agent_id: uuid.UUID, variant: str, fields: dict[str, Any]) -> Message:
    """An AgentEvent exactly as the runtime's handler publishes it (``publish_agent_event``): in
    ``MessageEnvelope::new`` on ``agent.{uuid}.events``, no source agent, no correlation."""
    return f"agent.{agent_id}.events", envelope({variant: {"agent_id": str(agent_id), **fields}})


def agent_event(agent_id: uuid.UUID, variant: str, fields: dict[str, Any], rng: random.Random) -> Message:
    """A --rich-events AgentEvent on ``agent.{id}.events``: bare, or in the envelope with either timestamp
    form (the forms a console must accept, so a rich run exercises all of them).

    The envelope's message id doubles as the Nats-Msg-Id, so it is random, never seeded: two runs
    with the same seed must not look like duplicates to JetStream.
    """
    body: dict[str, Any] = {variant: {"agent_id": str(agent_id), **fields}}
    if rng.random() < 0.5:
        body = {
            "message_id": str(uuid.uuid4()),
            "timestamp": rfc3339() if rng.random() < 0.5 else system_time(),
            "source_agent": str(agent_id),
            "target_agent": None,
            "correlation_id": None,
            "payload": body,
        }
    return f"agent.{agent_id}.events", body


def lifecycle_name(old: str, new: str) -> str | None:
    """The lifecycle event a move announces; Idle and Processing are work, not lifecycle, and announce none."""
    if new == S.RUNNING:
        return "resumed" if old == S.PAUSED else "running"
    return LIFECYCLE_EVENTS.get(new)


def lifecycle(
    agent_id: uuid.UUID, supervisor_id: uuid.UUID | None, old: str, new: str, trigger: str, error: dict | None
) -> Message | None:
    name = lifecycle_name(old, new)
    if name is None:
        return None
    body = {
        "agent_id": str(agent_id),
        "event_type": name.capitalize(),
        "timestamp": rfc3339(),
        "previous_state": old,
        "new_state": new,
        "metadata": {
            "trigger": trigger,
            "supervisor_id": str(supervisor_id) if supervisor_id else None,
            "related_task_id": None,
            "error_details": error,
        },
    }
    return f"supervision.agent.{agent_id}.lifecycle.{name}", body


def health(agent_id: uuid.UUID, rng: random.Random) -> Message:
    check = rng.choice(list(HEALTH_CHECKS))
    cpu, error_rate = round(rng.uniform(1, 99), 1), round(rng.random() * 0.1, 3)
    cpu_alert = {
        "alert_type": "cpu",
        "severity": "Critical" if cpu > 95 else "Warning",
        "message": f"CPU at {cpu}%",
        "threshold_value": 85.0,
        "actual_value": cpu,
    }
    body = {
        "agent_id": str(agent_id),
        "check_type": HEALTH_CHECKS[check],
        "timestamp": rfc3339(),
        "health_score": round(max(0.0, min(1.0, 1 - cpu / 200 - error_rate * 3)), 3),
        "metrics": {
            "cpu_percent": cpu,
            "memory_mb": rng.randint(80, 900),
            "active_tasks": rng.randint(0, 5),
            "queue_depth": rng.randint(0, 20),
            "response_time_ms": rng.randint(20, 3000),
            "error_rate": error_rate,
        },
        "alerts": [cpu_alert] if cpu > 85 else [],
    }
    return f"supervision.agent.{agent_id}.health.{check}", body


DISCOVERY_SUBJECTS = {  # discovery_type -> the last token of its subject (CONTRACTS.md §4)
    "Pattern": "patterns",
    "Anomaly": "anomalies",
    "Connection": "connections",
    "Solution": "solutions",
    "Question": "questions",
    "Insight": "insights",
}
ROLES = ["researcher", "coder", "reviewer", "planner", "Security", "Performance"]
# The runtime's DiscoveryBroadcaster (collaboration/discovery_sharing.rs) publishes a Question on
# discoveries.questions, a discovery built on another on discoveries.connections, any other on
# discoveries.insights: bare JSON, core NATS, no headers.
BROADCASTER_SUBJECTS = {"Question": "discoveries.questions"}
RELATED_SUBJECT = "discoveries.connections"
INSIGHTS_SUBJECT = "discoveries.insights"


def discovery(agent_id: uuid.UUID, rng: random.Random, *, rich: bool, earlier: str | None = None) -> Message:
    """A discovery shared by an agent, shaped as the runtime's ``Discovery`` (chrono timestamp, explicit null).

    By default on the broadcaster's subjects (``share_discovery`` / ``share_related_discovery``); with
    ``rich`` on ``discoveries.<agent>.<kind>`` as the contract also names, with long contents now and then.
    ``earlier`` (a previous content) makes it a related discovery, kept whole.
    """
    kind = "Connection" if earlier is not None else rng.choice(list(DISCOVERY_SUBJECTS))
    body = {
        "agent_id": str(agent_id),
        "agent_role": rng.choice(ROLES),
        "discovery_type": kind,
        "content": texts.discovery_content(rng, long_ok=rich),
        "confidence": round(rng.uniform(0.3, 1.0), 2),
        "timestamp": rfc3339(),
        "related_to": earlier,
    }
    if rich:
        return f"discoveries.{agent_id}.{DISCOVERY_SUBJECTS[kind]}", body
    if earlier is not None:
        return RELATED_SUBJECT, body
    return BROADCASTER_SUBJECTS.get(kind, INSIGHTS_SUBJECT), body


def system_health(active: int, capacity: int) -> Message:
    """A --rich-events pool report on ``system.health`` (the runtime itself publishes none there)."""
    return "system.health", health_data(active, capacity, max(capacity - active, 0))


def health_data(active: int, capacity: int, available: int) -> dict[str, Any]:
    """SystemMessageHandler's SystemHealth data: the pool's counts and ``healthy: true``."""
    return {"pool_active": active, "pool_capacity": capacity, "pool_available": available, "healthy": True}


def pool_status(agent_ids: list[uuid.UUID], capacity: int, available: int) -> dict[str, Any]:
    """``AgentPool::get_status`` serialised: ``PoolStatus {active_count, max_capacity, available_slots, agents}``."""
    return {
        "active_count": len(agent_ids),
        "max_capacity": capacity,
        "available_slots": available,
        "agents": [str(agent_id) for agent_id in agent_ids],
    }


ALLOCATION_EVENTS = ["requested", "assigned", "rejected", "redistributed", "completed", "failed", "timeout"]
CAPABILITIES = ["code", "review", "research", "plan", "test"]
STRATEGIES = ["Sequential", "Parallel", "Pipeline", "Consensus"]


def task_allocation(agent_ids: list[uuid.UUID], rng: random.Random) -> Message:
    """A supervision task-allocation event (CONTRACTS §3), chrono timestamp."""
    name = rng.choice(ALLOCATION_EVENTS)
    assigned = str(rng.choice(agent_ids)) if agent_ids and name != "requested" else None
    others = [str(a) for a in rng.sample(agent_ids, min(len(agent_ids), rng.randint(0, 3)))]
    body = {
        "event_type": name.capitalize(),
        "task_id": str(uuid.uuid4()),
        "timestamp": rfc3339(),
        "allocation_details": {
            "requested_capabilities": rng.sample(CAPABILITIES, rng.randint(1, 3)),
            "assigned_agent": assigned,
            "rejection_reasons": ["no agent with capacity"] if name == "rejected" else [],
            "alternative_agents": others,
            "priority": rng.randint(0, 10),
            "estimated_duration_ms": rng.randint(500, 600_000),
        },
        "coordination_metadata": {
            "workflow_id": str(uuid.uuid4()) if rng.random() < 0.5 else None,
            "parent_task_id": None,
            "dependencies": [],
            "coordination_strategy": rng.choice(STRATEGIES),
        },
    }
    return f"supervision.tasks.allocation.{name}", body


def random_failure(rng: random.Random) -> Failure:
    reason = rng.choice(list(FAILURES))
    details, severity = FAILURES[reason]
    trace = STACK_TRACE if reason in ("Crash", "UnhandledError") else None
    return Failure(reason, rng.choice(details), severity, trace)


def error_info(failure: Failure, node_name: str, agent_id: uuid.UUID) -> dict[str, Any]:
    return {
        "error_code": failure.reason,
        "message": failure.detail,
        "details": f"node {node_name}, agent {agent_id}",
        "stack_trace": failure.stack_trace,
        "recovery_suggestions": ["restart the node"],
    }


def coordination_error(failure: Failure, info: dict[str, Any]) -> Message:
    body = {"severity": failure.severity.capitalize(), "component": "supervision", "timestamp": rfc3339()}
    return f"supervision.error.{failure.severity}.supervision", body | {"error_info": info}


def parse_restart_node(body: Any) -> RestartCommand:
    """The console's RestartNode body; the delay is clamped so a bad value cannot park a restart for ever."""
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", "RestartNode is not an object")
    try:
        node_id = uuid.UUID(str(body["node_id"]))
        restart_id = str(uuid.UUID(str(body["restart_id"])))
        delay_ms = int(body.get("delay_ms") or 0)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidMessage("bad_field", str(error)) from error
    return RestartCommand(restart_id, node_id, min(max(delay_ms, 0), MAX_DELAY_MS))


def restart_completed(
    command: RestartCommand, success: bool, error_message: str | None, instance_id: uuid.UUID | None
) -> dict[str, Any]:
    """The answer in the envelope, correlated with the restart; optional fields are left out when empty."""
    answer: dict[str, Any] = {"restart_id": command.restart_id, "node_id": str(command.node_id), "success": success}
    if error_message:
        answer["error_message"] = error_message
    if instance_id:
        answer["new_instance_id"] = str(instance_id)
    return {
        "message_id": str(uuid.uuid4()),
        "timestamp": rfc3339(),
        "correlation_id": command.restart_id,
        "payload": {"RestartCompleted": answer},
    }
