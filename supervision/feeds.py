"""Supervision's feeds of the bridge: the restart protocol on SYSTEM_EVENTS (the runtime's answers
complete the restarts requested by services.request_restart) and the supervision events to the
live tree. Registered with the live path's feed registry when the apps are ready."""

from __future__ import annotations

from typing import Any

from mistersmith.jetstream.database_work import database_work
from mistersmith.jetstream.messages import InvalidMessage, decode_json, open_envelope
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.registry import Batch, BridgeStats, Feed, register_feed, register_sweep, reject
from supervision import services
from supervision.events import CONTROL_SUBJECT, control_variant, parse_restart_completed

# The runtime's system messages on system.control (CONTRACTS.md §5): counted by name when ignored.
CONTROL_VARIANTS = frozenset({"Startup", "Shutdown", "PoolStatus", "SystemHealth"})


@database_work
def apply_control(batch: Batch, stats: BridgeStats, consumer: str, frames: FrameBuffer) -> None:
    """SYSTEM_EVENTS. On system.control: RestartCompleted answers (idempotent by restart id) and the
    console's own RestartNode requests (to the live tree). system.health and pool.management go
    to the dashboard as they are."""
    for item in batch:
        sequence, subject, data = item
        try:
            message = decode_json(data)
            if subject != CONTROL_SUBJECT:
                body = open_envelope(message).payload
                frames.add("system", {"kind": subject, "body": body}, sequence, "SYSTEM_EVENTS")
                stats.processed[subject] += 1
                continue
            name, body = control_variant(message)
            if name == "RestartNode":
                node_id = body.get("node_id") if isinstance(body, dict) else None
                event = {"kind": "restart_requested", "node_id": str(node_id) if node_id else None}
                frames.add("supervision", event, sequence, "SYSTEM_EVENTS")
                stats.processed["restart_requested"] += 1
                continue
            if name != "RestartCompleted":
                # the variant's name comes off the wire: only the contract's own become counter keys
                stats.processed[f"ignored:{name}" if name in CONTROL_VARIANTS else "ignored:other"] += 1
                continue
            answer = parse_restart_completed(body)
            outcome = services.complete_restart(answer)
        except InvalidMessage as error:
            stats.rejected[reject("SYSTEM_EVENTS", item, error)] += 1
            continue
        stats.processed[f"restart_{outcome}"] += 1
        if outcome == "completed":
            event = {
                "kind": "restart_completed",
                "restart_id": str(answer.restart_id),
                "node_id": str(answer.node_id) if answer.node_id else None,
                "success": answer.success,
            }
            frames.add("supervision", event, sequence, "SYSTEM_EVENTS")


@database_work
def apply_supervision_batch(batch: Batch, stats: BridgeStats, consumer: str, frames: FrameBuffer) -> None:
    """supervision.>: the runtime's lifecycle, health and error events and the console's own
    (``supervision.node.<id>.<what>``); they change no projection, they go to the live pages."""
    for item in batch:
        sequence, subject, data = item
        try:
            body = open_envelope(decode_json(data)).payload
        except InvalidMessage as error:
            stats.rejected[reject("SUPERVISION_EVENTS", item, error)] += 1
            continue
        parts = subject.split(".")
        event: dict[str, Any] = {"kind": "supervision_event", "subject": subject}
        if len(parts) >= 3 and parts[1] == "node":
            event["node_id"] = parts[2]
            event["kind"] = "_".join(parts[3:]) or "node_event"
        elif len(parts) >= 3 and parts[1] == "agent":
            event["agent_id"] = parts[2]
        # Which nodes to redraw, not the body: it may hold a failure's details, which a watcher of the
        # tree may not be allowed to see (the pages read the nodes again, with their permissions).
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict) and isinstance(metadata.get("supervisor_id"), str):
            event["supervisor_id"] = metadata["supervisor_id"]
        frames.add("supervision", event, sequence, "SUPERVISION_EVENTS")
        stats.processed["supervision_event"] += 1


register_feed(Feed("control", "SYSTEM_EVENTS", apply_control, order=0))
register_feed(Feed("supervision", "SUPERVISION_EVENTS", apply_supervision_batch, order=3))
register_sweep("restart_timed_out", services.expire_overdue_restarts)
