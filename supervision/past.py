"""The supervision tree as it was at a past moment, and what changed between two moments.

Read from supervision_node_history (migration 0006): each node's versions over
[valid_from, valid_to). The tree at T is the versions holding at T, read exactly as the live tree
is read (supervision/selectors.py): a *selection* of node ids (the top levels, a page of children,
the path to a node) and then one statement for everything the page shows about them, the same
:func:`selectors.node_json` shape, with failures and restarts counted up to T and the restart
budget computed in the policy window ending at T. Pages are found through the history's
(parent, name) index, so the first render at T costs what the live first render costs.

Child states (supervision_child_states) are not kept in the history: in the past they read as none.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from supervision import selectors
from supervision.selectors import (
    CHILD_STATES,
    FAILURE_FIELDS,
    HISTORY_LIMIT,
    NODE_STATUSES,
    OPEN_ROOTS,
    PAGE_SIZE,
    RESTART_COUNT_CAP,
    RESTART_FIELDS,
    NodeId,
    TreeSlice,
)
from supervision.state_diff import POLICY_FIELDS, NodeState, TreeDiff, diff_trees

DIFF_NODE_CAP = 1000  # nodes compared between two moments (the diff says when more changed)
DIFF_LIST_LIMIT = 50  # failures and restarts listed between two moments
COUNT_CAP = 10_000  # failures and restarts counted between two moments, at most


# The version of ``alias`` holding at %(at)s.
def _holds(alias: str) -> str:
    return f"{alias}.valid_from <= %(at)s AND ({alias}.valid_to IS NULL OR {alias}.valid_to > %(at)s)"


def _policy_int(field_name: str) -> str:
    return f"(h.policy->>'{field_name}')::int"


STATUS_COUNTS_SQL = ", ".join(
    f"count(*) FILTER (WHERE c.status = '{status}') AS \"status_{status}\"" for status in NODE_STATUSES
)
NO_STATE_COUNTS_SQL = ", ".join(f'0 AS "state_{state}"' for state in CHILD_STATES)

# Everything the page shows about the nodes in ``selection(id, in_page)`` as they were at %(at)s.
NODES_AT_SQL = f"""
WITH RECURSIVE {{ctes}},
picked AS (
    SELECT id, bool_or(in_page) AS in_page, bool_or(NOT in_page) AS pinned FROM selection GROUP BY id
)
SELECT h.node AS id, h.name, h.node_type, h.node_type_detail, h.status, h.parent_node_id,
       h.agent_id, a.name AS agent_name, h.valid_from AS updated_at, NULL::timestamptz AS terminated_at,
       (h.policy->>'id')::uuid AS policy_id, h.policy->>'supervision_strategy' AS supervision_strategy,
       {_policy_int("max_restarts")} AS max_restarts, {_policy_int("time_window_seconds")} AS time_window_seconds,
       h.policy->>'backoff_strategy' AS backoff_strategy, (h.policy->>'backoff_factor')::numeric AS backoff_factor,
       {_policy_int("min_restart_delay_ms")} AS min_restart_delay_ms,
       {_policy_int("max_restart_delay_ms")} AS max_restart_delay_ms,
       win.used AS failures_in_window,
       win.oldest + make_interval(secs => {_policy_int("time_window_seconds")}) AS budget_next_slot_at,
       (h.policy->>'escalate_on_limit')::boolean AS escalate_on_limit,
       ((h.policy->>'escalate_on_limit')::boolean AND win.used + 1 >= {_policy_int("max_restarts")})
           AS budget_escalates,
       up.node AS budget_parent_id, up.name AS budget_parent_name,
       (SELECT max(f.occurred_at) FROM supervision_failures f
         WHERE f.node_id = h.node AND f.occurred_at <= %(at)s) AS last_failure_at,
       (SELECT count(*) FROM (
           SELECT 1 FROM supervision_restarts r WHERE r.node_id = h.node AND r.started_at <= %(at)s
           LIMIT {RESTART_COUNT_CAP}
       ) capped) AS restarts,
       kids.*, {NO_STATE_COUNTS_SQL},
       picked.in_page, picked.pinned, NULL::boolean AS matched
FROM picked
JOIN supervision_node_history h ON h.node = picked.id AND {_holds("h")}
LEFT JOIN agents a ON a.id = h.agent_id
LEFT JOIN LATERAL (
    SELECT count(*) AS used, min(f.occurred_at) AS oldest FROM supervision_failures f
    WHERE f.node_id = h.node AND f.occurred_at <= %(at)s
      AND f.occurred_at > %(at)s - make_interval(secs => {_policy_int("time_window_seconds")})
) win ON h.policy IS NOT NULL
LEFT JOIN supervision_node_history up ON up.node = h.parent_node_id AND {_holds("up")}
CROSS JOIN LATERAL (
    SELECT count(*) AS child_count, {STATUS_COUNTS_SQL}
    FROM supervision_node_history c WHERE c.parent_node_id = h.node AND {_holds("c")}
) kids
ORDER BY h.parent_node_id NULLS FIRST, h.name
"""

# The first page of children at %(at)s of each parent in ``opened(id)``, one more row than a page.
CHILD_PAGES_AT_SQL = f"""
    SELECT k.id, true AS in_page FROM opened o CROSS JOIN LATERAL (
        SELECT c.node AS id FROM supervision_node_history c
        WHERE c.parent_node_id = o.id AND {_holds("c")} ORDER BY c.name LIMIT %(page)s
    ) k
"""

ROOTS_AT_SQL = f"""
    SELECT h.node AS id, h.name FROM supervision_node_history h
    WHERE h.parent_node_id IS NULL AND {_holds("h")} ORDER BY h.name LIMIT %(page)s
"""

CHAIN_AT_SQL = f"""
WITH RECURSIVE chain(id, parent, depth, seen) AS (
    SELECT h.node, h.parent_node_id, 0, ARRAY[h.node] FROM supervision_node_history h
    WHERE h.node = %(node)s AND {_holds("h")}
    UNION ALL
    SELECT h.node, h.parent_node_id, c.depth + 1, c.seen || h.node
    FROM chain c JOIN supervision_node_history h ON h.node = c.parent AND {_holds("h")}
    WHERE NOT h.node = ANY(c.seen)
)
SELECT id FROM chain ORDER BY depth DESC
"""


@dataclass(frozen=True)
class Moment:
    """A past moment the page shows, and from when the console's history knows the tree."""

    at: datetime
    known_from: datetime | None  # None: no history at all yet

    @property
    def before_history(self) -> bool:
        return self.known_from is None or self.at < self.known_from


def known_from() -> datetime | None:
    """The earliest moment the history answers for: its first version, or the retention cutoff
    (the history is pruned with the failures: mistersmith/operations/retention.py) if later."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(valid_from) FROM supervision_node_history")
        first = cursor.fetchone()[0]
    days = int(getattr(settings, "RETENTION_DAYS", {}).get("failures", 0))
    if first is None or days <= 0:
        return first
    return max(first, timezone.now() - timedelta(days=days))


def top_levels_at(at: datetime, deep_link: NodeId | None = None) -> TreeSlice:
    """The first render at ``at``: as :func:`selectors.top_levels` (roots, the first page of
    children of the first roots, the path to ``deep_link``), from the versions holding then."""
    chain = chain_at(at, deep_link)
    ctes = f"""
    top AS ({ROOTS_AT_SQL}),
    opened AS (
        (SELECT id FROM top ORDER BY name LIMIT %(open_roots)s)
        UNION SELECT unnest(%(parents)s::uuid[])
    ),
    selection AS (
        SELECT id, true AS in_page FROM top
        UNION ALL {CHILD_PAGES_AT_SQL}
        UNION ALL SELECT unnest(%(pinned)s::uuid[]), false
    )"""
    params = {"at": at, "page": PAGE_SIZE + 1, "open_roots": OPEN_ROOTS, "parents": chain[:-1], "pinned": chain}
    rows = _fetch_nodes_at(ctes, params)
    return TreeSlice(
        groups=selectors._parents_first(selectors._group_rows(rows, page=PAGE_SIZE), None),
        open=[str(i) for i in chain[:-1]],
        selected=str(chain[-1]) if chain else None,
    )


def children_page_at(at: datetime, parent: NodeId | None, after: str | None = None) -> TreeSlice:
    """One page of a node's children at ``at`` (``parent`` None: the roots), after the name ``after``."""
    where = "c.parent_node_id IS NULL" if parent is None else "c.parent_node_id = %(parent)s"
    if after is not None:
        where += " AND c.name > %(after)s"
    ctes = f"""
    selection AS (
        SELECT c.node AS id, true AS in_page FROM supervision_node_history c
        WHERE {where} AND {_holds("c")} ORDER BY c.name LIMIT %(page)s
    )"""
    rows = _fetch_nodes_at(ctes, {"at": at, "parent": parent, "after": after, "page": PAGE_SIZE + 1})
    key = None if parent is None else uuid.UUID(str(parent))
    groups = selectors._group_rows(rows, page=PAGE_SIZE, after=after)
    group = groups.get(key) or selectors.Group(parent=None if key is None else str(key), after=after)
    return TreeSlice(groups=[group])


def path_to_at(at: datetime, node: NodeId) -> TreeSlice:
    """What the page needs to open the path to ``node`` as the tree was at ``at``."""
    chain = chain_at(at, node)
    if not chain:
        return TreeSlice(groups=[])
    ctes = f"""
    opened AS (SELECT unnest(%(parents)s::uuid[]) AS id),
    selection AS (
        SELECT id, true AS in_page FROM ({ROOTS_AT_SQL}) top
        UNION ALL {CHILD_PAGES_AT_SQL}
        UNION ALL SELECT unnest(%(pinned)s::uuid[]), false
    )"""
    rows = _fetch_nodes_at(ctes, {"at": at, "parents": chain[:-1], "pinned": chain, "page": PAGE_SIZE + 1})
    return TreeSlice(
        groups=selectors._parents_first(selectors._group_rows(rows, page=PAGE_SIZE), None),
        open=[str(i) for i in chain[:-1]],
        selected=str(chain[-1]),
    )


def node_details_at(at: datetime, node: NodeId, hidden: tuple[str, ...] | list[str] = ()) -> dict[str, Any] | None:
    """A node's panel at ``at``: its node JSON then, and its latest failures and restarts up to
    ``at`` (three queries, each bounded); None when the node did not exist then."""
    rows = _fetch_nodes_at("selection AS (SELECT %(node)s::uuid AS id, true AS in_page)", {"at": at, "node": node})
    if not rows:
        return None
    parts = {
        "failures": ("supervision_failures", "occurred_at", FAILURE_FIELDS),
        "restarts": ("supervision_restarts", "started_at", RESTART_FIELDS),
    }
    details: dict[str, Any] = {"node": selectors.node_json(rows[0]), "child_states": []}
    for part, (table, time_column, fields) in parts.items():
        details[part] = [] if part in hidden else _history_before(table, time_column, fields, node, at)
    return details


def chain_at(at: datetime, node: NodeId | None) -> list[uuid.UUID]:
    """The ids from the root down to ``node`` as the tree was at ``at``; empty if it did not exist."""
    if node is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(CHAIN_AT_SQL, {"at": at, "node": node})
        return [row[0] for row in cursor.fetchall()]


@dataclass
class MomentsDiff:
    """What changed from ``before`` to ``after``: the nodes (state_diff's one diff), and the
    failures and restarts in between (the latest listed, all counted up to COUNT_CAP)."""

    before: datetime
    after: datetime
    nodes: TreeDiff
    nodes_truncated: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_count: int = 0
    restarts: list[dict[str, Any]] = field(default_factory=list)
    restart_count: int = 0

    @property
    def count_cap(self) -> int:
        return COUNT_CAP


# The earliest versions opened and closed after %(before)s up to %(after)s, each side read in
# time order from its index and stopped at %(rows)s rows: the first changes, not every change.
CHANGES_SQL = """
(SELECT node, valid_from AS at, 'opened' AS side FROM supervision_node_history
  WHERE valid_from > %(before)s AND valid_from <= %(after)s ORDER BY valid_from LIMIT %(rows)s)
UNION ALL
(SELECT node, valid_to, 'closed' FROM supervision_node_history
  WHERE valid_to > %(before)s AND valid_to <= %(after)s ORDER BY valid_to LIMIT %(rows)s)
ORDER BY at
"""
CHANGE_ROWS = 4 * DIFF_NODE_CAP  # versions read per side to find the first DIFF_NODE_CAP nodes

STATES_AT_SQL = f"""
SELECT h.node, h.name, h.node_type, h.status, h.parent_node_id, h.policy
FROM supervision_node_history h WHERE h.node = ANY(%(nodes)s::uuid[]) AND {_holds("h")}
"""

BETWEEN_SQL = """
SELECT t.id, t.{time} AS at, t.node_id, n.node_id AS node_name, {columns}
FROM {table} t LEFT JOIN supervision_nodes n ON n.id = t.node_id
WHERE t.{time} > %(before)s AND t.{time} <= %(after)s ORDER BY t.{time} DESC, t.id DESC LIMIT %(limit)s
"""
COUNT_BETWEEN_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM {table} t WHERE t.{time} > %(before)s AND t.{time} <= %(after)s LIMIT %(cap)s
) capped
"""
BETWEEN_COLUMNS = {
    "supervision_failures": ("occurred_at", "t.failure_reason AS reason, t.failure_detail AS detail"),
    "supervision_restarts": ("started_at", "t.restart_attempt_number AS attempt, t.success"),
}


def diff_moments(first: datetime, second: datetime) -> MomentsDiff:
    """The tree at the earlier of two moments against the later: the nodes whose status, parent
    or policy differ (the first DIFF_NODE_CAP nodes to change), nodes added and removed, and the
    failures and restarts in between. Seven queries whatever the history's size."""
    before, after = sorted((first, second))
    nodes, truncated = _first_changed(before, after)
    diff = MomentsDiff(before, after, diff_trees(_states_at(before, nodes), _states_at(after, nodes)), truncated)
    diff.failures, diff.failure_count = _between("supervision_failures", before, after)
    diff.restarts, diff.restart_count = _between("supervision_restarts", before, after)
    return diff


def _first_changed(before: datetime, after: datetime) -> tuple[list[uuid.UUID], bool]:
    """The first DIFF_NODE_CAP nodes to change after ``before`` (in time order), and whether
    more changed: two index ranges read in time order, never every change of a busy span."""
    with connection.cursor() as cursor:
        cursor.execute(CHANGES_SQL, {"before": before, "after": after, "rows": CHANGE_ROWS})
        rows = cursor.fetchall()
    nodes = list(dict.fromkeys(node for node, _, _ in rows))
    full = any(sum(1 for row in rows if row[2] == side) >= CHANGE_ROWS for side in ("opened", "closed"))
    return nodes[:DIFF_NODE_CAP], full or len(nodes) > DIFF_NODE_CAP


def _states_at(at: datetime, nodes: list[uuid.UUID]) -> dict[uuid.UUID, NodeState]:
    with connection.cursor() as cursor:
        cursor.execute(STATES_AT_SQL, {"at": at, "nodes": nodes})
        return {
            node: NodeState(name, node_type, status, parent, _policy_state(policy))
            for node, name, node_type, status, parent, policy in cursor.fetchall()
        }


def _policy_state(policy: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """The policy fields of a version (Django's connection hands jsonb over as text)."""
    if isinstance(policy, str):
        policy = json.loads(policy)
    return None if policy is None else {name: policy.get(name) for name in POLICY_FIELDS}


def _between(table: str, before: datetime, after: datetime) -> tuple[list[dict[str, Any]], int]:
    time_column, columns = BETWEEN_COLUMNS[table]
    params = {"before": before, "after": after, "limit": DIFF_LIST_LIMIT, "cap": COUNT_CAP}
    with connection.cursor() as cursor:
        cursor.execute(BETWEEN_SQL.format(table=table, time=time_column, columns=columns), params)
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        cursor.execute(COUNT_BETWEEN_SQL.format(table=table, time=time_column), params)
        return rows, cursor.fetchone()[0]


def _history_before(table: str, time_column: str, fields: list[str], node: NodeId, at: datetime) -> list[dict]:
    columns = ", ".join(f"t.{name}" for name in fields)
    sql = (
        f"SELECT {columns} FROM {table} t WHERE t.node_id = %(node)s AND t.{time_column} <= %(at)s "
        f"ORDER BY t.{time_column} DESC LIMIT %(limit)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"node": node, "at": at, "limit": HISTORY_LIMIT})
        return [selectors._plain(dict(zip(fields, row, strict=True))) for row in cursor.fetchall()]


def _fetch_nodes_at(ctes: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(NODES_AT_SQL.format(ctes=ctes), params)
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
