"""A realistic demo installation: a supervision tree, agents, sessions, failures, a hive.

Sizes go from a laptop demo to benchmark scale (100,000 nodes, millions of failures), so rows
are written with COPY, and failures and restarts are generated inside PostgreSQL with
``INSERT ... SELECT generate_series`` (nothing crosses the wire row by row).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from agents.lifecycle import AgentState
from agents.models import DEFAULT_MODEL, InteractiveSession, SessionMessage
from supervision.models import SupervisionNode

MODELS = [DEFAULT_MODEL, "claude-3-5-haiku-20241022", "claude-3-opus-20240229"]
STRATEGIES = ["OneForOne", "OneForOne", "OneForAll", "RestForOne", "Escalate"]
BACKOFFS = [("Exponential", "2.00"), ("Exponential", "1.50"), ("Linear", "2.00"), ("Fixed", "2.00")]
AGENT_STATES = (
    [AgentState.RUNNING] * 5
    + [AgentState.IDLE] * 3
    + [AgentState.PROCESSING] * 2
    + [
        AgentState.PAUSED,
        AgentState.ERROR,
    ]
)


class DemoExists(Exception):
    """The prefix is already used by nodes in this database."""


@dataclass
class DemoNode:
    id: uuid.UUID
    name: str
    node_type: str
    detail: str | None
    parent: DemoNode | None
    level: int
    agent_id: uuid.UUID | None = None
    instance_id: uuid.UUID | None = None
    children: list[DemoNode] = field(default_factory=list)


def level_sizes(nodes: int, levels: int) -> list[int]:
    """How many nodes each level gets so that ``levels`` levels hold ``nodes`` nodes in all."""
    if nodes < levels:
        return [1] * nodes
    low, high = 1.0, float(nodes)
    for _ in range(60):  # bisect the fan-out f with 1 + f + ... + f^(levels-1) = nodes
        fanout = (low + high) / 2
        total = sum(fanout**k for k in range(levels))
        low, high = (fanout, high) if total < nodes else (low, fanout)
    sizes = [max(1, round(fanout**k)) for k in range(levels)]
    sizes[0] = 1
    sizes[-1] = max(1, nodes - sum(sizes[:-1]))
    return sizes


def build_tree(prefix: str, nodes: int, levels: int, rng: random.Random) -> list[DemoNode]:
    """The nodes of a tree, parents before children; supervisors inside, workers at the leaves."""
    sizes = level_sizes(nodes, levels)
    tree: list[DemoNode] = [DemoNode(uuid.uuid4(), f"{prefix}-root", "RootSupervisor", None, None, 0)]
    previous = tree
    counters = {"AgentSupervisor": 0, "Worker": 0, "Service": 0}
    for level, size in enumerate(sizes[1:], start=1):
        leaf_level = level == len(sizes) - 1
        current = []
        for index in range(size):
            parent = previous[index % len(previous)]
            if rng.random() < 0.08:
                node_type, detail = "Service", rng.choice(["postgres", "nats", "mcp-server", "http-gateway"])
            elif leaf_level:
                node_type, detail = "Worker", rng.choice(["claude-cli", "research", "coder", "reviewer"])
            else:
                node_type, detail = "AgentSupervisor", rng.choice(["team", "pool", "swarm"])
            counters[node_type] += 1
            short = {"AgentSupervisor": "sup", "Worker": "worker", "Service": "svc"}[node_type]
            node = DemoNode(
                uuid.uuid4(), f"{prefix}-{short}-{counters[node_type]:06d}", node_type, detail, parent, level
            )
            if node_type != "Service":
                node.agent_id, node.instance_id = uuid.uuid4(), uuid.uuid4()
            parent.children.append(node)
            current.append(node)
        # Services are leaves: the next level hangs under supervisors only.
        previous = [n for n in current if n.node_type != "Service"] or previous
        tree.extend(current)
    return tree


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@contextmanager
def secondary_indexes_rebuilt(table: str, incoming_rows: int) -> Iterator[None]:
    """Drop a table's secondary indexes for a bulk load larger than the table, rebuild them after.

    Building an index once is about twice as fast as maintaining it row by row. Constraint
    indexes (primary key, unique) stay, so the load is still checked. Runs inside the caller's
    transaction: on any error the indexes come back with the rollback.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        existing = max(cursor.fetchone()[0], 0)
        if incoming_rows <= existing:
            yield
            return
        cursor.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = current_schema() AND i.tablename = %s
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
            """,
            [table],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    yield
    with connection.cursor() as cursor:
        # Deferred foreign-key checks of the load must run first: CREATE INDEX refuses pending ones.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute(f"ANALYZE {table}")


def _node_status(rng: random.Random) -> str:
    return rng.choices(["active", "inactive", "failed", "terminated"], weights=[85, 6, 6, 3])[0]


def seed(
    *,
    prefix: str = "demo",
    nodes: int = 200,
    levels: int = 5,
    failures: int = 2000,
    days: int = 7,
    sessions: int = 12,
    hive: bool = True,
    seed_value: int = 0,
) -> dict[str, int]:
    """Write a demo installation in one transaction and return what was written, per table."""
    rng = random.Random(seed_value)
    if SupervisionNode.objects.filter(node_id=f"{prefix}-root").exists():
        raise DemoExists(f"A demo with prefix {prefix!r} already exists; choose another --prefix.")
    tree = build_tree(prefix, nodes, levels, rng)
    now = timezone.now()
    with transaction.atomic():
        _write_agents(tree, rng, now)
        _write_nodes(tree, rng)
        _write_policies(tree, rng)
        _write_child_states(tree, rng, now)
        with secondary_indexes_rebuilt("supervision_failures", failures):
            failure_count = _write_failures(prefix, failures, days)
        with secondary_indexes_rebuilt("supervision_restarts", failures):
            restart_count = _write_restarts() if failure_count else 0  # demo_failures exists only then
        session_count, message_count = _write_sessions(tree, sessions, rng, now)
    counts = {
        "nodes": len(tree),
        "agents": sum(1 for n in tree if n.agent_id),
        "failures": failure_count,
        "restarts": restart_count,
        "sessions": session_count,
        "messages": message_count,
    }
    if hive:
        from hive.demo import seed_hive

        counts.update({f"hive_{k}": v for k, v in seed_hive(seed=seed_value).items()})
    return counts


def _write_agents(tree: list[DemoNode], rng: random.Random, now) -> None:
    with_agents = [n for n in tree if n.agent_id]
    copy_rows(
        "agents",
        ["id", "name", "agent_type", "status", "model", "timeout_seconds", "memory_limit_mb", "last_heartbeat"],
        (
            (
                n.agent_id,
                f"{n.name}-agent",
                "supervisor" if n.node_type == "AgentSupervisor" else n.detail,
                rng.choice(AGENT_STATES),
                rng.choice(MODELS),
                rng.choice([120, 300, 600]),
                rng.choice([256, 512, 1024]),
                now - timedelta(seconds=rng.randint(0, 30)),
            )
            for n in with_agents
        ),
    )
    copy_rows(
        "agent_instances",
        ["id", "agent_id", "status", "last_heartbeat", "host_name", "port"],
        (
            (n.instance_id, n.agent_id, "running", now, f"host-{rng.randint(1, 8)}", rng.randint(20000, 29999))
            for n in with_agents
        ),
    )


def _write_nodes(tree: list[DemoNode], rng: random.Random) -> None:
    copy_rows(
        "supervision_nodes",
        ["id", "node_id", "node_type", "node_type_detail", "status", "parent_node_id", "agent_id", "configuration"],
        (
            (
                n.id,
                n.name,
                n.node_type,
                n.detail,
                _node_status(rng),
                n.parent.id if n.parent else None,
                n.agent_id,
                json.dumps({"level": n.level}),
            )
            for n in tree
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agents a SET supervision_node_id = n.id FROM supervision_nodes n"
            " WHERE n.agent_id = a.id AND n.id = ANY(%s)",
            [[n.id for n in tree if n.agent_id]],
        )


def _write_policies(tree: list[DemoNode], rng: random.Random) -> None:
    def policy(node: DemoNode) -> tuple:
        backoff, factor = rng.choice(BACKOFFS)
        low = rng.choice([50, 100, 250])
        return (
            node.id,
            rng.choice(STRATEGIES) if node.children else "OneForOne",
            rng.choice([3, 5, 5, 10]),
            rng.choice([30, 60, 60, 300]),
            backoff,
            factor,
            low,
            rng.choice([5000, 30000, 60000]),
            rng.random() < 0.8,
        )

    copy_rows(
        "supervision_policies",
        [
            "node_id",
            "supervision_strategy",
            "max_restarts",
            "time_window_seconds",
            "backoff_strategy",
            "backoff_factor",
            "min_restart_delay_ms",
            "max_restart_delay_ms",
            "escalate_on_limit",
        ],
        (policy(n) for n in tree if n.children or rng.random() < 0.5),
    )


def _write_child_states(tree: list[DemoNode], rng: random.Random, now) -> None:
    copy_rows(
        "supervision_child_states",
        [
            "node_id",
            "child_id",
            "child_node_id",
            "instance_id",
            "state",
            "last_heartbeat",
            "error_count",
            "restart_count",
        ],
        (
            (
                n.parent.id,
                n.name,
                n.id,
                n.instance_id,
                rng.choices(["Running", "Starting", "Failed", "Stopped"], weights=[85, 5, 6, 4])[0],
                now - timedelta(seconds=rng.randint(0, 60)),
                rng.randint(0, 3),
                rng.randint(0, 2),
            )
            for n in tree
            if n.parent
        ),
    )


FAILURE_DETAILS = [
    "process exited with status 137",
    "no heartbeat for 30s",
    "memory limit of 512 MB exceeded",
    "unhandled error: tool call timed out",
    "upstream API returned 529 overloaded",
]


def _write_failures(prefix: str, count: int, days: int) -> int:
    """``count`` failures over the last ``days`` days on this demo's nodes, generated in the server, each
    decided as the runtime's supervisor decides (``should_restart``): restarted while the node's failures
    inside its policy's window number fewer than max_restarts, else escalated (or left, without a policy).

    The window count is one window function over the failures with time measured in each node's own
    window length (so ``RANGE 1 PRECEDING`` is that node's window): no SQL function call per row. Rows are
    inserted oldest first, as a runtime writes them: the time indexes grow at their end.
    """
    if count <= 0:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TEMP TABLE demo_targets ON COMMIT DROP AS
            SELECT id, (row_number() OVER (ORDER BY node_id)) - 1 AS rn
            FROM supervision_nodes WHERE node_id LIKE %s
            """,
            [f"{prefix}-%"],
        )
        cursor.execute("CREATE INDEX ON demo_targets (rn)")
        cursor.execute("SELECT count(*) FROM demo_targets")
        targets = cursor.fetchone()[0]
        cursor.execute(
            """
            CREATE TEMP TABLE demo_failures ON COMMIT DROP AS
            SELECT f.*, p.id AS policy_id,
                   p.id IS NOT NULL AND count(*) OVER (
                       PARTITION BY f.node_id ORDER BY f.epoch / COALESCE(p.time_window_seconds, 1)
                       RANGE BETWEEN 1 PRECEDING AND CURRENT ROW
                   ) < p.max_restarts AS restarted,
                   count(*) OVER (
                       PARTITION BY f.node_id ORDER BY f.epoch / COALESCE(p.time_window_seconds, 1)
                       RANGE BETWEEN 1 PRECEDING AND CURRENT ROW
                   )::int AS in_window,
                   COALESCE(p.escalate_on_limit, false) AS escalates
            FROM (
                SELECT gen_random_uuid() AS id, t.id AS node_id, g, occurred_at,
                       extract(epoch FROM occurred_at) AS epoch
                FROM (
                    SELECT g, now() - ((%s - g + random())::float8 / %s * %s * interval '1 day') AS occurred_at
                    FROM generate_series(1, %s) AS g
                ) generated
                JOIN demo_targets t ON t.rn = (g * 7919::bigint) %% %s
            ) f
            LEFT JOIN supervision_policies p ON p.node_id = f.node_id
            """,
            [count, count, days, count, targets],
        )
        cursor.execute(
            """
            INSERT INTO supervision_failures (id, node_id, failure_reason, failure_detail, context, occurred_at,
                restart_attempted, escalated_to_parent, recovery_action, correlation_id)
            SELECT id, node_id,
                   (enum_range(NULL::failure_reason))[1 + (g * 7) %% 5],
                   (%s::text[])[1 + (g * 7) %% 5],
                   jsonb_build_object('window_count', in_window, 'host', 'host-' || (g %% 8)),
                   occurred_at,
                   restarted,
                   NOT restarted AND escalates,
                   CASE WHEN restarted THEN 'restart' WHEN escalates THEN 'escalate' END,
                   CASE WHEN g %% 3 = 0 THEN gen_random_uuid() END
            FROM demo_failures ORDER BY occurred_at
            """,
            [FAILURE_DETAILS],
        )
        return cursor.rowcount


def _write_restarts() -> int:
    """One restart for each failure its supervisor restarted: attempt = the failures of the node inside the
    policy's window (as should_restart counts them), delay by calculate_restart_delay's rules computed in
    bulk (Fixed = min, Linear = min + 1000 x attempt, Exponential = min x factor^(attempt - 1), capped)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO supervision_restarts (node_id, failure_id, restart_attempt_number, restart_delay_ms,
                started_at, completed_at, success, error_message, new_instance_id)
            SELECT f.node_id, f.id, f.in_window, d.delay,
                   f.occurred_at + d.delay * interval '1 millisecond',
                   f.occurred_at + d.delay * interval '1 millisecond' + interval '2 seconds',
                   h % 10 <> 0,
                   CASE WHEN h % 10 = 0 THEN 'agent did not come back' END,
                   gen_random_uuid()
            FROM demo_failures f
            JOIN supervision_policies p ON p.id = f.policy_id
            CROSS JOIN LATERAL (SELECT abs(hashtext(f.id::text)) AS h) hashed
            CROSS JOIN LATERAL (
                SELECT round(LEAST(
                    CASE p.backoff_strategy
                        WHEN 'Fixed' THEN p.min_restart_delay_ms::numeric
                        WHEN 'Linear' THEN p.min_restart_delay_ms::numeric + 1000 * f.in_window
                        ELSE p.min_restart_delay_ms * power(COALESCE(p.backoff_factor, 2.0), f.in_window - 1)
                    END,
                    p.max_restart_delay_ms
                ))::int AS delay
            ) d
            WHERE f.restarted
            ORDER BY f.occurred_at
            """
        )
        return cursor.rowcount


CONVERSATION = [
    ("user", "Summarise the failing tests in the payments service."),
    ("assistant", "Three tests fail: two time out on the NATS connection, one asserts a stale balance."),
    ("user", "Fix the stale balance first."),
    ("assistant", "Done: the projection now reads after the commit. The test passes."),
]


def _write_sessions(tree: list[DemoNode], count: int, rng: random.Random, now) -> tuple[int, int]:
    agents = [n.agent_id for n in tree if n.node_type == "Worker"][: max(count, 0)]
    sessions = [
        InteractiveSession(
            agent_id=agent_id,
            state=rng.choice(["Ready", "Ready", "Processing", "Terminated", "Error"]),
            pid=rng.randint(1000, 60000),
            model=DEFAULT_MODEL,
        )
        for agent_id in agents
    ]
    for session in sessions:
        if session.state == "Error":
            session.error = "CLI process exited unexpectedly"
        if session.state in ("Terminated", "Error"):
            session.ended_at = now
    InteractiveSession.objects.bulk_create(sessions)
    messages = [
        SessionMessage(
            session=session,
            position=position,
            role=role,
            content=content,
            timestamp=now - timedelta(minutes=len(CONVERSATION) - position),
        )
        for session in sessions
        for position, (role, content) in enumerate(CONVERSATION)
    ]
    SessionMessage.objects.bulk_create(messages)
    return len(sessions), len(messages)
