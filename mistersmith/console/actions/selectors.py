"""What became of the actions a person started: their restarts and bulk agent commands, recent ones.

Every live page shows them (mistersmith/live/static/mistersmith/actions.js): a restart asked on the
tree and followed by a move to the agents list still ends with its notice there. Kept on the server,
per user (the rows' own requested_by), so a reload, another tab or another page all see the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.urls import reverse
from django.utils import timezone

from agents import bulk
from supervision.models import SupervisionRestart

RECENT_MINUTES = 30
RESTART_LIMIT = 20
TIMED_OUT_PREFIX = "Timed out:"  # supervision.services.expire_overdue_restarts writes it


def restart_state(restart: dict[str, Any]) -> str:
    """pending, succeeded, failed or timed_out (no RestartCompleted in time)."""
    if restart["completed_at"] is None:
        return "pending"
    if restart["success"]:
        return "succeeded"
    return "timed_out" if (restart["error_message"] or "").startswith(TIMED_OUT_PREFIX) else "failed"


def recent_restarts(user: Any, *, may_view_records: bool) -> list[dict[str, Any]]:
    """The restarts ``user`` asked for in the last RECENT_MINUTES, newest first (one query).
    ``may_view_records``: link each to its SupervisionRestart admin page (else no link)."""
    since = timezone.now() - timedelta(minutes=RECENT_MINUTES)
    rows = (
        SupervisionRestart.objects.filter(requested_by=user, started_at__gte=since)
        .order_by("-started_at")
        .values("id", "node_id", "node__node_id", "started_at", "completed_at", "success", "error_message")[
            :RESTART_LIMIT
        ]
    )
    tree = reverse("supervision:tree")
    return [
        {
            "id": str(row["id"]),
            "node_id": str(row["node_id"]),
            "node_name": row["node__node_id"],
            "state": restart_state(row),
            "error": row["error_message"] or "",
            "started_at": row["started_at"].isoformat(),
            "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None,
            "record_url": reverse("admin:supervision_supervisionrestart_change", args=[row["id"]])
            if may_view_records
            else None,
            "tree_url": f"{tree}?node={row['node_id']}",
        }
        for row in rows
    ]


def recent_actions(user: Any, *, may_view_restarts: bool, may_command: bool) -> dict[str, Any]:
    """The user's recent restarts and (with the command permission) bulk runs, with their links."""
    runs = bulk.recent_runs(user, minutes=RECENT_MINUTES) if may_command else []
    for run in runs:
        run["url"] = reverse("agent_pages:bulk_run", args=[run["id"]])
    return {"restarts": recent_restarts(user, may_view_records=may_view_restarts), "bulk": runs}
