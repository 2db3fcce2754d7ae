"""Read models of the supervision tree page: slices of the tree, search, and one node's panel.

The tree can hold 100,000 nodes, so the page never reads it whole. Each read picks a *selection*
of node ids (the top levels, one page of a node's children, the path to a node, the nodes that
match a filter) and then reads everything the page shows about them in the same statement:
policy, agent name, child count, failures in the policy window (the restart budget, see
budgets.py), restarts, last failure and
child-state counts, each a correlated subquery on an index. A read is one query whatever the
tree's size, and its cost grows with the nodes shown, not the nodes stored.

Siblings are ordered by name in SQL, as ``get_supervision_tree`` orders them (by path of names),
so the page shows the runtime's order under the database's collation; the browser never sorts.

A node reaches the browser as the dict of :func:`node_json`, and only that: the page renders it,
and live updates later will send the same dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Case, IntegerField, When

from supervision import budgets, rules
from supervision.models import (
    ChildState,
    NodeStatus,
    NodeType,
    SupervisionChildState,
    SupervisionFailure,
    SupervisionRestart,
    ancestor_ids,
)

PAGE_SIZE = 200  # children (or roots) per page: bounds a first render and an expand
OPEN_ROOTS = 10  # roots shown expanded on first render; further roots load their children on demand
FILTER_LIMIT = 200  # matching nodes shown by the status/type filter (plus their ancestors)
SEARCH_LIMIT = 20
HISTORY_LIMIT = 10  # failures and restarts in a node's panel
PANEL_CHILD_STATES = 20
RESTART_COUNT_CAP = 1000  # restarts are counted up to this, so a node with a long history stays cheap

CHILD_STATES = tuple(ChildState.values)
NODE_STATUSES = tuple(NodeStatus.values)
CHILD_STATE_ORDER = [ChildState.FAILED, ChildState.STARTING, ChildState.STOPPED, ChildState.RUNNING]

# The columns of a node's history in its panel (the runtime's own columns only).
FAILURE_FIELDS = ["id", "occurred_at", "failure_reason", "failure_detail", "restart_attempted", "escalated_to_parent"]
RESTART_FIELDS = [
    "id",
    "started_at",
    "restart_attempt_number",
    "restart_delay_ms",
    "completed_at",
    "success",
    "error_message",
]
CHILD_STATE_FIELDS = ["child_id", "child_node_id", "state", "last_heartbeat", "error_count", "restart_count"]

NodeId = uuid.UUID | str

# Everything the page shows about the nodes in ``selection(id, in_page, matched)``.
NODES_SQL = """
WITH RECURSIVE {ctes},
picked AS (
    SELECT id, bool_or(in_page) AS in_page, bool_or(NOT in_page) AS pinned, bool_or(matched) AS matched
    FROM selection GROUP BY id
)
SELECT n.id, n.node_id AS name, n.node_type, n.node_type_detail, n.status, n.parent_node_id,
       n.agent_id, a.name AS agent_name, n.updated_at, n.terminated_at,
       p.id AS policy_id, p.supervision_strategy, p.max_restarts, p.time_window_seconds,
       p.backoff_strategy, p.backoff_factor, p.min_restart_delay_ms, p.max_restart_delay_ms,
       {budget_columns},
       (SELECT max(f.occurred_at) FROM supervision_failures f WHERE f.node_id = n.id) AS last_failure_at,
       (SELECT count(*) FROM (
           SELECT 1 FROM supervision_restarts r WHERE r.node_id = n.id LIMIT {restart_cap}
       ) capped) AS restarts,
       kids.*,
       states.*,
       picked.in_page, picked.pinned, picked.matched
FROM picked
JOIN supervision_nodes n ON n.id = picked.id
LEFT JOIN supervision_policies p ON p.node_id = n.id
LEFT JOIN agents a ON a.id = n.agent_id
{window_join}
CROSS JOIN LATERAL (
    SELECT count(*) AS child_count, {status_counts} FROM supervision_nodes c WHERE c.parent_node_id = n.id
) kids
CROSS JOIN LATERAL (
    SELECT {state_counts} FROM supervision_child_states cs WHERE cs.node_id = n.id
) states
ORDER BY n.parent_node_id NULLS FIRST, n.node_id
"""

# The children the tree lists under a node (the nodes whose parent it is), counted per status in
# the same pass as child_count, so a node's summary adds up to the children shown when it is
# opened. The runtime's child-state rows (supervision_child_states) are another set (a child may
# be an instance, not a node) and are summed apart, as "child states". Labels are the enum's.
STATUS_COUNTS_SQL = ", ".join(
    f"count(*) FILTER (WHERE c.status = '{status}') AS \"status_{status}\"" for status in NODE_STATUSES
)

# Child states counted per state in one pass; the labels are the enum's, not input.
STATE_COUNTS_SQL = ", ".join(
    f"count(*) FILTER (WHERE cs.state = '{state}') AS \"state_{state}\"" for state in CHILD_STATES
)

# The first page of children of each parent in ``opened(id)``, one more row than a page.
CHILD_PAGES_SQL = """
    SELECT k.id, true AS in_page, NULL::boolean AS matched FROM opened o CROSS JOIN LATERAL (
        SELECT c.id FROM supervision_nodes c WHERE c.parent_node_id = o.id ORDER BY c.node_id LIMIT %(page)s
    ) k
"""

# The ancestors of ``seeds(id)`` and the seeds themselves, following parents; cycle-safe.
ANCESTORS_SQL = """
chain(id, parent, seen) AS (
    SELECT n.id, n.parent_node_id, ARRAY[n.id] FROM seeds s JOIN supervision_nodes n ON n.id = s.id
    UNION ALL
    SELECT p.id, p.parent_node_id, c.seen || p.id
    FROM chain c JOIN supervision_nodes p ON p.id = c.parent
    WHERE NOT p.id = ANY(c.seen)
)
"""


@dataclass
class Group:
    """Children of one parent as the page shows them (``parent`` None: the top level).

    ``nodes`` is a page in name order; ``pinned`` are nodes past that page that must be shown
    anyway (the path to a deep-linked node), placed after the "show more" item until their page loads.
    """

    parent: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pinned: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False
    after: str | None = None
    filtered: bool = False


@dataclass
class TreeSlice:
    """What one request adds to the page: groups in parent-before-child order, and what to open."""

    groups: list[Group]
    open: list[str] = field(default_factory=list)  # nodes to expand, top down
    selected: str | None = None
    matches: list[str] = field(default_factory=list)  # filter mode: the nodes that matched
    truncated: bool = False  # filter mode: more nodes matched than are shown

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def node_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """The one shape a node has in the browser; the page's ``renderNode()`` draws exactly this."""
    policy = None
    if row["policy_id"] is not None:
        policy = {
            "id": str(row["policy_id"]),
            "strategy": row["supervision_strategy"],
            "max_restarts": row["max_restarts"],
            "window_seconds": row["time_window_seconds"],
            "backoff": row["backoff_strategy"],
            "backoff_factor": None if row["backoff_factor"] is None else str(row["backoff_factor"]),
            "min_delay_ms": row["min_restart_delay_ms"],
            "max_delay_ms": row["max_restart_delay_ms"],
        }
    failures = row["failures_in_window"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "type": row["node_type"],
        "detail": row["node_type_detail"],
        "status": row["status"],
        "parent_id": _str_or_none(row["parent_node_id"]),
        "agent": None if row["agent_id"] is None else {"id": str(row["agent_id"]), "name": row["agent_name"]},
        "policy": policy,
        "failures_in_window": failures,
        # The runtime's should_restart(), from the figures already read (no query per node).
        "restart_allowed": rules.restart_allowed(_Limit(row["max_restarts"]) if policy else None, failures or 0),
        "budget": budgets.budget_json(row),
        "restarts": row["restarts"],
        "restarts_capped": row["restarts"] >= RESTART_COUNT_CAP,
        "last_failure_at": _iso(row["last_failure_at"]),
        "child_count": row["child_count"],
        "child_statuses": {status: row[f"status_{status}"] for status in NODE_STATUSES},
        "child_states": {state: row[f"state_{state}"] for state in CHILD_STATES},
        "updated_at": _iso(row["updated_at"]),
        "terminated_at": _iso(row["terminated_at"]),
    }


@dataclass(frozen=True)
class _Limit:
    """The one policy field ``rules.restart_allowed`` reads."""

    max_restarts: int


def top_levels(scope: NodeId | None = None, deep_link: NodeId | None = None) -> TreeSlice:
    """The first render: roots (or the one ``scope`` node) and the first page of children of the
    first roots, so the page is bounded however many roots and children there are.

    With ``deep_link``, also the path to that node: the first page of children of each of its
    ancestors, and the ancestors themselves where they fall past a page. One query, two with a
    deep link (its ancestors first).
    """
    chain = _chain_to(deep_link)
    if scope is not None and chain:
        scope_id = uuid.UUID(str(scope))
        # The path starts at the scope node; a node elsewhere shows every root instead.
        chain, scope = (chain[chain.index(scope_id) :], scope_id) if scope_id in chain else (chain, None)
    if scope is None:
        top = "SELECT id, node_id FROM supervision_nodes WHERE parent_node_id IS NULL ORDER BY node_id LIMIT %(page)s"
    else:
        top = "SELECT id, node_id FROM supervision_nodes WHERE id = %(scope)s"
    ctes = f"""
    top AS ({top}),
    opened AS (
        (SELECT id FROM top ORDER BY node_id LIMIT %(open_roots)s)
        UNION SELECT unnest(%(parents)s::uuid[])
    ),
    selection AS (
        SELECT id, true AS in_page, NULL::boolean AS matched FROM top
        UNION ALL {CHILD_PAGES_SQL}
        UNION ALL SELECT unnest(%(pinned)s::uuid[]), false, NULL
    )"""
    params = {"scope": scope, "page": PAGE_SIZE + 1, "open_roots": OPEN_ROOTS, "parents": chain[:-1], "pinned": chain}
    rows = _fetch_nodes(ctes, params)
    if scope is not None and not rows:
        return top_levels(deep_link=deep_link)  # no such node: the whole tree rather than nothing
    top_key = None if scope is None else _parent_of(rows, scope)
    return TreeSlice(
        groups=_parents_first(_group_rows(rows, page=PAGE_SIZE), top_key),
        open=[str(i) for i in chain[:-1]],
        selected=str(chain[-1]) if chain else None,
    )


def children_page(parent: NodeId | None, after: str | None = None) -> TreeSlice:
    """One page of a node's children (``parent`` None: of the roots), after the name ``after``.

    Keyset paging on the name: page N costs what page 1 costs. One query.
    """
    where = "c.parent_node_id IS NULL" if parent is None else "c.parent_node_id = %(parent)s"
    if after is not None:
        where += " AND c.node_id > %(after)s"
    ctes = f"""
    selection AS (
        SELECT c.id, true AS in_page, NULL::boolean AS matched FROM supervision_nodes c
        WHERE {where} ORDER BY c.node_id LIMIT %(page)s
    )"""
    rows = _fetch_nodes(ctes, {"parent": parent, "after": after, "page": PAGE_SIZE + 1})
    key = None if parent is None else uuid.UUID(str(parent))
    group = _group_rows(rows, page=PAGE_SIZE, after=after).get(key) or Group(parent=_str_or_none(key), after=after)
    return TreeSlice(groups=[group])


def path_to(node: NodeId) -> TreeSlice:
    """Everything the page needs to open the path to ``node``: its ancestors (one recursive
    query) and, in one more query, the roots and the first page of children of each ancestor,
    plus the path's own nodes where they fall past a page."""
    chain = _chain_to(node)
    if not chain:
        return TreeSlice(groups=[])
    ctes = f"""
    opened AS (SELECT unnest(%(parents)s::uuid[]) AS id),
    selection AS (
        SELECT id, true AS in_page, NULL::boolean AS matched FROM (
            SELECT id FROM supervision_nodes WHERE parent_node_id IS NULL ORDER BY node_id LIMIT %(page)s
        ) top
        UNION ALL {CHILD_PAGES_SQL}
        UNION ALL SELECT unnest(%(pinned)s::uuid[]), false, NULL
    )"""
    rows = _fetch_nodes(ctes, {"parents": chain[:-1], "pinned": chain, "page": PAGE_SIZE + 1})
    return TreeSlice(
        groups=_parents_first(_group_rows(rows, page=PAGE_SIZE), None),
        open=[str(i) for i in chain[:-1]],
        selected=str(chain[-1]),
    )


def filtered_tree(status: str | None = None, node_type: str | None = None, escalating: bool = False) -> TreeSlice:
    """The nodes with this status and/or type, and/or one failure from escalating (the first
    ``FILTER_LIMIT`` by name), with their ancestors so each shows where it sits: one query for
    them all, one to tell whether more matched."""
    conditions, params = _filter_conditions("m", status, node_type)
    if escalating:
        conditions.append(f"m.id IN {budgets.ESCALATING_IDS_SQL}")
    where = " AND ".join(conditions) or "true"
    ctes = f"""
    seeds AS (SELECT m.id FROM supervision_nodes m WHERE {where} ORDER BY m.node_id LIMIT %(limit)s),
    {ANCESTORS_SQL},
    selection AS (
        SELECT c.id, true AS in_page, c.id IN (SELECT id FROM seeds) AS matched FROM chain c
    )"""
    rows = _fetch_nodes(ctes, {**params, "limit": FILTER_LIMIT})
    with connection.cursor() as cursor:
        more = f"SELECT EXISTS (SELECT 1 FROM supervision_nodes m WHERE {where} ORDER BY m.node_id OFFSET %(limit)s)"
        cursor.execute(more, {**params, "limit": FILTER_LIMIT})
        truncated = cursor.fetchone()[0]
    parents = {row["parent_node_id"] for row in rows}
    return TreeSlice(
        groups=_parents_first(_group_rows(rows, page=None, filtered=True), None),
        open=[str(row["id"]) for row in rows if row["id"] in parents],
        matches=[str(row["id"]) for row in rows if row["matched"]],
        truncated=truncated,
    )


def search_nodes(
    text: str, status: str | None = None, node_type: str | None = None, limit: int = SEARCH_LIMIT
) -> list[dict[str, Any]]:
    """Nodes whose name contains ``text`` (any case), names starting with it first, each with the
    names on its path from the root. One query: the matches and their ancestors' names."""
    text = text.strip()
    if not text:
        return []
    conditions, params = _filter_conditions("n", status, node_type)
    conditions.append("n.node_id ILIKE %(pattern)s")
    sql = f"""
    WITH RECURSIVE seeds AS (
        SELECT n.id, n.node_id, n.node_type, n.node_type_detail, n.status,
               n.node_id ILIKE %(prefix)s AS prefix_match
        FROM supervision_nodes n WHERE {" AND ".join(conditions)}
        ORDER BY prefix_match DESC, n.node_id LIMIT %(limit)s
    ),
    up(hit, id, parent, name, depth, seen) AS (
        SELECT s.id, s.id, n.parent_node_id, s.node_id, 0, ARRAY[s.id]
        FROM seeds s JOIN supervision_nodes n ON n.id = s.id
        UNION ALL
        SELECT u.hit, p.id, p.parent_node_id, p.node_id, u.depth + 1, u.seen || p.id
        FROM up u JOIN supervision_nodes p ON p.id = u.parent
        WHERE NOT p.id = ANY(u.seen)
    )
    SELECT s.id, s.node_id, s.node_type, s.node_type_detail, s.status,
           (SELECT array_agg(u.name ORDER BY u.depth DESC) FROM up u WHERE u.hit = s.id) AS path
    FROM seeds s ORDER BY s.prefix_match DESC, s.node_id
    """
    escaped = _like_escape(text)
    params.update({"pattern": f"%{escaped}%", "prefix": f"{escaped}%", "limit": limit})
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            {"id": str(pk), "name": name, "type": kind, "detail": detail, "status": status, "path": path}
            for pk, name, kind, detail, status, path in cursor.fetchall()
        ]


LIVE_REFRESH_LIMIT = 500


def nodes_for_refresh(node_ids: Iterable[NodeId], agent_ids: Iterable[NodeId] = ()) -> list[dict[str, Any]]:
    """The :func:`node_json` of the given nodes and of the nodes of the given agents (at most
    LIVE_REFRESH_LIMIT), in one query: what the live tree redraws when events name them."""
    rows = _fetch_nodes(
        """selection AS (
               SELECT id, true AS in_page, NULL::boolean AS matched FROM supervision_nodes
                WHERE id = ANY(%(nodes)s::uuid[]) OR agent_id = ANY(%(agents)s::uuid[])
                LIMIT %(limit)s)""",
        {"nodes": [str(n) for n in node_ids], "agents": [str(a) for a in agent_ids], "limit": LIVE_REFRESH_LIMIT},
    )
    return [node_json(row) for row in rows]


def node_budget(node: NodeId) -> dict[str, Any] | None:
    """One node's restart budget (budgets.budget_json), read as the tree reads it: one query."""
    rows = nodes_for_refresh([node])
    return rows[0]["budget"] if rows else None


def node_details(node: NodeId, hidden: Collection[str] = ()) -> dict[str, Any] | None:
    """A node's panel: its :func:`node_json`, latest failures and restarts, and some child states
    (problems first). Four queries, each bounded; None when the node does not exist. The parts
    named in ``hidden`` ("failures", "restarts", "child_states") are not read and come back empty."""
    rows = _fetch_nodes(
        "selection AS (SELECT %(node)s::uuid AS id, true AS in_page, NULL::boolean AS matched)", {"node": node}
    )
    if not rows:
        return None
    failures = SupervisionFailure.objects.filter(node_id=node).order_by("-occurred_at")[:HISTORY_LIMIT]
    restarts = SupervisionRestart.objects.filter(node_id=node).order_by("-started_at")[:HISTORY_LIMIT]
    problems_first = Case(
        *(When(state=state, then=rank) for rank, state in enumerate(CHILD_STATE_ORDER)), output_field=IntegerField()
    )
    child_states = SupervisionChildState.objects.filter(node_id=node).order_by(problems_first, "child_id")
    parts = {
        "failures": lambda: failures.values(*FAILURE_FIELDS),
        "restarts": lambda: restarts.values(*RESTART_FIELDS),
        "child_states": lambda: child_states.values(*CHILD_STATE_FIELDS)[:PANEL_CHILD_STATES],
    }
    return {
        "node": node_json(rows[0]),
        **{part: [] if part in hidden else [_plain(row) for row in read()] for part, read in parts.items()},
    }


def _fetch_nodes(ctes: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run :data:`NODES_SQL` over the selection the ``ctes`` define; rows as dicts."""
    sql = NODES_SQL.format(
        ctes=ctes,
        budget_columns=budgets.BUDGET_COLUMNS,
        window_join=budgets.WINDOW_JOIN,
        restart_cap=RESTART_COUNT_CAP,
        state_counts=STATE_COUNTS_SQL,
        status_counts=STATUS_COUNTS_SQL,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _group_rows(
    rows: Sequence[Mapping[str, Any]], *, page: int | None, after: str | None = None, filtered: bool = False
) -> dict[uuid.UUID | None, Group]:
    """Rows (ordered by parent, then name) as groups keyed by parent id.

    A page query reads one row more than a page: that row only says there is more. It is dropped
    from the page, and kept as pinned when it lies on the path being opened.
    """
    by_parent: dict[uuid.UUID | None, Group] = {}
    pending: dict[uuid.UUID | None, tuple[list, list]] = {}
    for row in rows:
        page_rows, pinned_rows = pending.setdefault(row["parent_node_id"], ([], []))
        (page_rows if row["in_page"] else pinned_rows).append(row)
    for key, (page_rows, pinned_rows) in pending.items():
        group = Group(parent=_str_or_none(key), after=after, filtered=filtered)
        if page is not None and len(page_rows) > page:
            extra = page_rows.pop()
            group.has_more = True
            if extra["pinned"]:
                pinned_rows.insert(0, extra)
        group.nodes = [node_json(row) for row in page_rows]
        group.pinned = [node_json(row) for row in pinned_rows]
        by_parent[key] = group
    return by_parent


def _parents_first(by_parent: dict[uuid.UUID | None, Group], top_key: uuid.UUID | None) -> list[Group]:
    """The groups the page can place, top down from ``top_key``'s group (shown as the top level):
    a group comes after the group holding its parent. Others (nodes in a cycle) are left out."""
    ordered: list[Group] = []
    queue: list[uuid.UUID | None] = [top_key]
    while queue:
        group = by_parent.pop(queue.pop(0), None)
        if group is None:
            continue
        ordered.append(group)
        queue.extend(uuid.UUID(node["id"]) for node in [*group.nodes, *group.pinned])
    if ordered:
        ordered[0].parent = None
    return ordered


def _chain_to(node: NodeId | None) -> list[uuid.UUID]:
    """The ids from the root down to ``node`` (one recursive query); empty for no such node."""
    if node is None:
        return []
    return list(reversed(ancestor_ids(node)))


def _parent_of(rows: Iterable[Mapping[str, Any]], node: NodeId) -> uuid.UUID | None:
    return next((row["parent_node_id"] for row in rows if str(row["id"]) == str(node)), None)


def _filter_conditions(alias: str, status: str | None, node_type: str | None) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions for the status and type filters; unknown values are ignored, not errors."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if status in NodeStatus.values:
        conditions.append(f"{alias}.status = %(status)s::node_status")
        params["status"] = status
    if node_type in NodeType.values:
        conditions.append(f"{alias}.node_type = %(node_type)s::node_type")
        params["node_type"] = node_type
    return conditions, params


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its ids and times as strings, ready for JSON."""
    return {key: _plain_value(value) for key, value in row.items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
