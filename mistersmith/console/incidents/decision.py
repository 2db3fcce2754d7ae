"""A failure and its supervisor's decision as of the moment it happened, in one statement.

The runtime decides with its SQL functions (CONTRACTS.md §1): ``should_restart(node)`` is true while
the node's failures with ``occurred_at > now() - time_window_seconds`` number fewer than
``max_restarts``, and ``calculate_restart_delay(policy, attempt)`` gives the delay. ``should_restart``
reads ``now()``, which cannot be moved back to the failure's time; so :data:`FAILURE_SQL` counts the
same rows with the failure's ``occurred_at`` in place of ``now()`` (the failures inside the window
that ends at this failure, itself included: the runtime records the failure, then asks) and compares
them with ``max_restarts`` the same way. A test holds the count equal to ``should_restart``'s answer
for a failure recorded at ``now()``. The attempt is that count (the k-th failure in the window is the
k-th restart attempt, as mistersmith/simulator/demo.py numbers the restart rows; each restart row's
own attempt number is shown beside it in the story) and its delay is
``calculate_restart_delay(policy, attempt)`` itself, called in the statement: never a copy of it.

Escalation is the policy's rule on top (:func:`rule_escalates`): strategy Escalate always, a failure
reason listed in ``escalate_on_error_types`` always, and a refused restart when ``escalate_on_limit``.
The policy read is the node's policy now; ``policy_changed_since`` says when it was edited after the
failure, so the decision shown may not be the one the supervisor took.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection

# One row: the failure, its node, parent and policy, the window count as of the failure, the delay
# of that attempt (the runtime's function), and the node's next failure (where the story ends).
FAILURE_SQL = """
SELECT f.id, f.node_id, f.failure_reason::text AS failure_reason, f.failure_detail, f.stack_trace, f.context,
       f.occurred_at, f.restart_attempted, f.escalated_to_parent, f.recovery_action, f.correlation_id,
       n.node_id AS node_name, n.node_type::text AS node_type, n.status::text AS node_status, n.agent_id,
       n.parent_node_id AS parent_id, up.node_id AS parent_name,
       p.id AS policy_id, p.supervision_strategy::text AS strategy, p.max_restarts, p.time_window_seconds,
       p.backoff_strategy::text AS backoff_strategy, p.backoff_factor, p.min_restart_delay_ms,
       p.max_restart_delay_ms, p.escalate_on_limit, p.escalate_on_error_types, p.escalation_timeout_seconds,
       p.updated_at > f.occurred_at AS policy_changed_since,
       win.counted AS failures_in_window,
       CASE WHEN p.id IS NOT NULL AND win.counted > 0 THEN calculate_restart_delay(p.id, win.counted::int) END
           AS delay_ms,
       nxt.id AS next_failure_id, nxt.occurred_at AS next_failure_at
FROM supervision_failures f
JOIN supervision_nodes n ON n.id = f.node_id
LEFT JOIN supervision_nodes up ON up.id = n.parent_node_id
LEFT JOIN supervision_policies p ON p.node_id = n.id
LEFT JOIN LATERAL (
    SELECT count(*) AS counted FROM supervision_failures w
    WHERE w.node_id = f.node_id
      AND w.occurred_at > f.occurred_at - make_interval(secs => p.time_window_seconds)
      AND w.occurred_at <= f.occurred_at
) win ON p.id IS NOT NULL
LEFT JOIN LATERAL (
    SELECT w.id, w.occurred_at FROM supervision_failures w
    WHERE w.node_id = f.node_id AND w.occurred_at > f.occurred_at
    ORDER BY w.occurred_at LIMIT 1
) nxt ON true
WHERE f.id = %s
"""


@dataclass(frozen=True)
class Decision:
    """What the runtime's rules say about one failure, and what was recorded, side by side."""

    has_policy: bool
    strategy: str | None
    failures_in_window: int | None
    max_restarts: int | None
    window_seconds: int | None
    should_restart: bool  # the runtime's answer as of the failure: failures in window < max_restarts
    restart: bool  # the supervisor restarts: should_restart, unless the strategy is Escalate
    attempt: int | None  # the restart attempt this failure calls for (None: no restart)
    delay_ms: int | None  # calculate_restart_delay(policy, attempt)
    escalates: bool
    escalation_reasons: list[str]
    parent: dict[str, str] | None  # where an escalation goes; None: a root (beyond it)
    recorded_restart: bool
    recorded_escalation: bool
    policy_changed_since: bool

    @property
    def disagreements(self) -> list[str]:
        """Where the failure's own flags differ from what the rules say."""
        found = []
        if self.recorded_restart != self.restart:
            found.append(
                f"The failure records restart_attempted={_yes(self.recorded_restart)}; "
                f"the rules say {'restart' if self.restart else 'no restart'}."
            )
        if self.recorded_escalation != self.escalates:
            found.append(
                f"The failure records escalated_to_parent={_yes(self.recorded_escalation)}; "
                f"the rules say {'escalate' if self.escalates else 'no escalation'}."
            )
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "has_policy": self.has_policy,
            "strategy": self.strategy,
            "failures_in_window": self.failures_in_window,
            "max_restarts": self.max_restarts,
            "window_seconds": self.window_seconds,
            "should_restart": self.should_restart,
            "restart": self.restart,
            "attempt": self.attempt,
            "delay_ms": self.delay_ms,
            "escalates": self.escalates,
            "escalation_reasons": self.escalation_reasons,
            "escalates_to": self.parent,
            "recorded": {"restart_attempted": self.recorded_restart, "escalated_to_parent": self.recorded_escalation},
            "disagreements": self.disagreements,
            "policy_changed_since": self.policy_changed_since,
        }


def _yes(value: bool) -> str:
    return "true" if value else "false"


def failure_row(failure_id: uuid.UUID) -> dict[str, Any] | None:
    """The failure with its node, parent, policy and decision figures (:data:`FAILURE_SQL`); None when unknown."""
    with connection.cursor() as cursor:
        cursor.execute(FAILURE_SQL, [failure_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column.name for column in cursor.description], row, strict=True))


def rule_escalates(row: dict[str, Any], should_restart: bool) -> list[str]:
    """Why the policy sends this failure to the parent (empty: it does not). The runtime's
    supervisor escalates under strategy Escalate, for a reason named in escalate_on_error_types,
    and when the restart is refused with escalate_on_limit."""
    if row["policy_id"] is None:
        return []
    reasons = []
    if row["strategy"] == "Escalate":
        reasons.append("the strategy is Escalate: every failure goes to the parent")
    if row["failure_reason"] in (row["escalate_on_error_types"] or []):
        reasons.append(f"{row['failure_reason']} is among the policy's escalate_on_error_types")
    if not should_restart and row["escalate_on_limit"]:
        reasons.append(
            f"{row['failures_in_window']} failures in {row['time_window_seconds']} s reach max_restarts "
            f"{row['max_restarts']}, and escalate_on_limit is on"
        )
    return reasons


def decide(row: dict[str, Any]) -> Decision:
    """The decision of :data:`FAILURE_SQL`'s row: ``should_restart``'s comparison on the count as of
    the failure, the attempt and the runtime's delay for it, and the escalation rule."""
    has_policy = row["policy_id"] is not None
    counted = row["failures_in_window"] if has_policy else None
    should_restart = has_policy and counted < row["max_restarts"]
    restart = should_restart and row["strategy"] != "Escalate"
    reasons = rule_escalates(row, should_restart)
    parent = None
    if row["parent_id"] is not None:
        parent = {"id": str(row["parent_id"]), "name": row["parent_name"]}
    return Decision(
        has_policy=has_policy,
        strategy=row["strategy"],
        failures_in_window=counted,
        max_restarts=row["max_restarts"],
        window_seconds=row["time_window_seconds"],
        should_restart=should_restart,
        restart=restart,
        attempt=counted if restart else None,
        delay_ms=row["delay_ms"] if restart else None,
        escalates=bool(reasons),
        escalation_reasons=reasons,
        parent=parent,
        recorded_restart=row["restart_attempted"],
        recorded_escalation=row["escalated_to_parent"],
        policy_changed_since=bool(row["policy_changed_since"]),
    )
