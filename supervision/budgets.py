"""Restart budgets: how much of its policy's restart allowance each node has used, when the window
frees the next slot, and whether one more failure makes its supervisor escalate.

Built on the runtime's own rule, never a second copy of it: ``should_restart(node)`` says yes
while the node's failures inside the policy's window (``occurred_at > now() - time_window_seconds``)
number fewer than ``max_restarts``. So, in SQL, with the same ``now()`` as the runtime's function:

- *used*: those failures, counted;
- *allowed*: used < max_restarts (what ``should_restart`` answers; the tree's rows read both and
  the tests hold them to each other);
- *next slot frees at*: the oldest failure in the window + the window (when it leaves the window
  one more restart is allowed);
- *escalates*: used + 1 >= max_restarts (after one more failure ``should_restart`` says no) and
  the policy has ``escalate_on_limit``: the failure goes to the parent node.

Two reads: :data:`WINDOW_JOIN` and :data:`BUDGET_COLUMNS` are spliced into the tree's per-node
statement (selectors.NODES_SQL: one index range per node shown), and :func:`budget_summary`
counts every node's budget in one set-based statement (failures read once, from the time index,
back to the longest policy window up to an hour; then grouped per node and filtered by each node's
own window; nodes with longer windows counted one index range each).
"""

from __future__ import annotations

from typing import Any

from django.db import connection

# Budget states, worst first: the badge's colour and the gauges' label values.
EXHAUSTED = "exhausted"  # no restart left: should_restart says no
LAST_SLOT = "last_slot"  # one restart left: the next failure uses it up
OK = "ok"
NO_POLICY = "no_policy"  # the runtime would not restart the node at all
STATES = (EXHAUSTED, LAST_SLOT, OK, NO_POLICY)

# For the per-node statement: ``win`` (used, oldest) of node ``n`` under its policy ``p``; all
# NULL without a policy. ``up`` is the parent node (the escalation's target).
WINDOW_JOIN = """
LEFT JOIN LATERAL (
    SELECT count(*) AS used, min(f.occurred_at) AS oldest FROM supervision_failures f
    WHERE f.node_id = n.id AND f.occurred_at > now() - make_interval(secs => p.time_window_seconds)
) win ON p.id IS NOT NULL
LEFT JOIN supervision_nodes up ON up.id = n.parent_node_id
"""

# The budget as columns, from ``win``, ``p`` and ``up``; the runtime's own should_restart beside it.
BUDGET_COLUMNS = """
win.used AS failures_in_window,
win.oldest + make_interval(secs => p.time_window_seconds) AS budget_next_slot_at,
p.escalate_on_limit,
(p.escalate_on_limit AND win.used + 1 >= p.max_restarts) AS budget_escalates,
up.id AS budget_parent_id, up.node_id AS budget_parent_name,
CASE WHEN p.id IS NOT NULL THEN should_restart(n.id) END AS runtime_should_restart
"""

# Windows longer than this are counted per node instead (see ALL_BUDGETS_SQL).
LONG_WINDOW_SECONDS = 3600

# Every policy's budget in one statement: ``budgets(id, used, max_restarts, escalates)``, ``id`` the
# node's (a node without a policy has no budget). Two paths to the failures in the windows:
#
# - windows up to LONG_WINDOW_SECONDS (the runtime's default is 60 s): the failures are read once
#   from supervision_failures_time_idx back to the longest such window, then kept only inside their
#   own node's window. The range's upper bound ('infinity', never false) is there for the planner:
#   it cannot know the horizon (a subquery) when it plans, and a range of two unknown bounds is
#   estimated narrow (0.5 %), so it reads the time index instead of every failure;
# - longer windows: one range of supervision_failures_node_time_idx per such node, so that one
#   policy of 30 days does not make every node's count read 30 days of failures.
ALL_BUDGETS_SQL = f"""
WITH horizon AS (
    SELECT now() - make_interval(secs => coalesce(max(time_window_seconds), 0)) AS since,
           'infinity'::timestamptz AS until
    FROM supervision_policies WHERE time_window_seconds <= {LONG_WINDOW_SECONDS}
),
recent AS (
    SELECT f.node_id, count(*) AS used
    FROM supervision_failures f
    JOIN supervision_policies p ON p.node_id = f.node_id AND p.time_window_seconds <= {LONG_WINDOW_SECONDS}
    WHERE f.occurred_at > (SELECT since FROM horizon) AND f.occurred_at < (SELECT until FROM horizon)
      AND f.occurred_at > now() - make_interval(secs => p.time_window_seconds)
    GROUP BY f.node_id
    UNION ALL
    SELECT p.node_id, (
        SELECT count(*) FROM supervision_failures f
        WHERE f.node_id = p.node_id AND f.occurred_at > now() - make_interval(secs => p.time_window_seconds)
    )
    FROM supervision_policies p WHERE p.time_window_seconds > {LONG_WINDOW_SECONDS}
),
budgets AS (
    SELECT p.node_id AS id, coalesce(r.used, 0) AS used, p.max_restarts,
           p.escalate_on_limit AND coalesce(r.used, 0) + 1 >= p.max_restarts AS escalates
    FROM supervision_policies p
    LEFT JOIN recent r ON r.node_id = p.node_id
)
"""

SUMMARY_SQL = (
    ALL_BUDGETS_SQL
    + """
SELECT count(*) FILTER (WHERE used >= max_restarts),
       count(*) FILTER (WHERE used + 1 = max_restarts),
       count(*) FILTER (WHERE used + 1 < max_restarts),
       (SELECT count(*) FROM supervision_nodes) - count(*),
       count(*) FILTER (WHERE escalates)
FROM budgets
"""
)

# Every node with its budget (NULLs: no policy): what "budgets for all nodes" reads whole.
ALL_NODES_SQL = (
    ALL_BUDGETS_SQL
    + """
SELECT n.id, n.node_id AS name, b.used, b.max_restarts, b.escalates
FROM supervision_nodes n LEFT JOIN budgets b ON b.id = n.id
"""
)

# The ids of the nodes one failure from escalating: a query (for RawSQL) and a subquery (the tree's filter).
ESCALATING_IDS_QUERY = f"{ALL_BUDGETS_SQL} SELECT id FROM budgets WHERE escalates"
ESCALATING_IDS_SQL = f"({ESCALATING_IDS_QUERY})"


def budget_state(used: int | None, max_restarts: int | None) -> str:
    """One of :data:`STATES` for ``used`` failures in the window of a ``max_restarts`` policy."""
    if max_restarts is None or used is None:
        return NO_POLICY
    if used >= max_restarts:
        return EXHAUSTED
    return LAST_SLOT if used + 1 == max_restarts else OK


def budget_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """A node's budget as the page shows it, from the columns of :data:`BUDGET_COLUMNS`; None
    without a policy (the runtime would not restart it: there is no budget)."""
    if row["policy_id"] is None:
        return None
    used, limit = row["failures_in_window"], row["max_restarts"]
    escalates = bool(row["budget_escalates"])
    parent = None
    if escalates and row["budget_parent_id"] is not None:
        parent = {"id": str(row["budget_parent_id"]), "name": row["budget_parent_name"]}
    next_slot = row["budget_next_slot_at"]
    return {
        "used": used,
        "max": limit,
        "window_seconds": row["time_window_seconds"],
        "state": budget_state(used, limit),
        "allowed": used < limit,
        "next_slot_at": None if next_slot is None else next_slot.isoformat(),
        "escalates": escalates,
        "escalates_to": parent,
    }


def budget_summary() -> dict[str, int]:
    """How many nodes are in each budget state, and how many are one failure from escalating:
    every node, one statement (for the gauges and the dashboard)."""
    with connection.cursor() as cursor:
        cursor.execute(SUMMARY_SQL)
        exhausted, last_slot, ok, no_policy, escalating = cursor.fetchone()
    return {EXHAUSTED: exhausted, LAST_SLOT: last_slot, OK: ok, NO_POLICY: no_policy, "escalating": escalating}
