"""The supervision tables written with the runtime's own statement shapes (CONTRACTS.md §1).

What the stand-in writes, and why: the supervision tables (nodes, policies, failures, restarts, child
states) and agent instances with their heartbeats, because the runtime's supervision writes those in
PostgreSQL itself. It never writes ``agents.status`` or ``agents.last_heartbeat``: an agent's state lives
in the runtime's memory and reaches the console only through Spawned/Terminated events and command replies
(CONTRACTS §2), so the console's projection must get it from there. The one exception is a tree made in an
empty database (``create_tree``): its ``agents`` rows are seed data the nodes' foreign keys need.

Text cast to the enum types (``%s::node_type``), policies upserted ``ON CONFLICT (node_id)``, child
states upserted ``ON CONFLICT (node_id, child_id)``, failures inserted ``RETURNING id``: a console
schema that rejects one of these would reject the real runtime too.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from mistersmith.simulator.demo import build_tree
from mistersmith.simulator.payloads import Failure

Executor = psycopg.AsyncConnection | psycopg.AsyncCursor
CONFIG_KEYS = ["model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"]
DEFAULT_POLICY = ("OneForOne", 5, 60, "Exponential", 2.0, 100, 30_000, True, [], 10)  # the runtime's default

NODE_STATUS = "UPDATE supervision_nodes SET status = %s::node_status, updated_at = NOW() WHERE id = %s"
UPSERT_CHILD = """
    INSERT INTO supervision_child_states (node_id, child_id, child_node_id, instance_id, state, last_heartbeat,
        error_count, restart_count)
    VALUES (%s, %s, %s, %s, %s::child_state, %s, %s, %s)
    ON CONFLICT (node_id, child_id) DO UPDATE SET
        child_node_id = EXCLUDED.child_node_id,
        instance_id = COALESCE(EXCLUDED.instance_id, supervision_child_states.instance_id),
        state = EXCLUDED.state,
        last_heartbeat = COALESCE(EXCLUDED.last_heartbeat, supervision_child_states.last_heartbeat),
        error_count = supervision_child_states.error_count + EXCLUDED.error_count,
        restart_count = supervision_child_states.restart_count + EXCLUDED.restart_count,
        updated_at = NOW()
"""
UPSERT_POLICY = """
    INSERT INTO supervision_policies (node_id, supervision_strategy, max_restarts, time_window_seconds,
        backoff_strategy, backoff_factor, min_restart_delay_ms, max_restart_delay_ms, escalate_on_limit,
        escalate_on_error_types, escalation_timeout_seconds)
    VALUES (%s, %s::supervision_strategy, %s, %s, %s::backoff_strategy, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (node_id) DO UPDATE SET
        supervision_strategy = EXCLUDED.supervision_strategy, max_restarts = EXCLUDED.max_restarts,
        time_window_seconds = EXCLUDED.time_window_seconds, backoff_strategy = EXCLUDED.backoff_strategy,
        backoff_factor = EXCLUDED.backoff_factor, min_restart_delay_ms = EXCLUDED.min_restart_delay_ms,
        max_restart_delay_ms = EXCLUDED.max_restart_delay_ms, escalate_on_limit = EXCLUDED.escalate_on_limit,
        escalate_on_error_types = EXCLUDED.escalate_on_error_types,
        escalation_timeout_seconds = EXCLUDED.escalation_timeout_seconds, updated_at = NOW()
"""
# One agent's facts for a command: state, its (newest) node, uptime since its newest instance started (or
# since the row was made), heartbeat age, and the config a Status answer carries.
AGENT_FACTS = """
    SELECT a.status, n.id, n.node_id, n.parent_node_id, n.status::text,
           EXTRACT(EPOCH FROM now() - COALESCE(
               (SELECT max(i.started_at) FROM agent_instances i WHERE i.agent_id = a.id), a.created_at))::float8,
           EXTRACT(EPOCH FROM now() - a.last_heartbeat)::float8,
           {config}
    FROM agents a
    LEFT JOIN LATERAL (
        SELECT id, node_id, parent_node_id, status FROM supervision_nodes
        WHERE agent_id = a.id ORDER BY created_at DESC LIMIT 1
    ) n ON true
    WHERE a.id = %s
""".format(config=", ".join(f"a.{key}" for key in CONFIG_KEYS))
STOP_INSTANCES = (
    "UPDATE agent_instances SET status = 'stopped'"
    " WHERE agent_id = %s AND status IN ('starting', 'running', 'stopping')"
)
TERMINATE_NODE = (
    "UPDATE supervision_nodes SET status = 'terminated'::node_status, terminated_at = NOW(), updated_at = NOW()"
    " WHERE id = %s"
)
SAMPLE = """
    SELECT n.id, n.node_id, n.parent_node_id, n.agent_id, a.status, n.status::text, {config}
    FROM supervision_nodes n JOIN agents a ON a.id = n.agent_id
    WHERE n.node_type IN ('Worker', 'AgentSupervisor') AND n.id {{}} %s ORDER BY n.id LIMIT %s
""".format(config=", ".join(f"a.{key}" for key in CONFIG_KEYS))


async def fetch_one(executor: Executor, query: str, params: Any = ()) -> Any:
    return await (await executor.execute(query, params)).fetchone()


async def has_nodes(db: psycopg.AsyncConnection) -> bool:
    return (await fetch_one(db, "SELECT EXISTS (SELECT 1 FROM supervision_nodes)"))[0]


async def create_tree(db: psycopg.AsyncConnection, size: int, rng: random.Random) -> int:
    """A small tree (root, supervisors, workers) written as the runtime does: nodes inserted inactive, then
    activated, each with the runtime's default policy and a Running child state under its parent."""
    tree = build_tree(f"sim-{uuid.uuid4().hex[:6]}", size, 3, rng)
    with_agents = [n for n in tree if n.agent_id]
    now = datetime.now(UTC)
    async with db.transaction(), db.cursor() as cur:
        await cur.executemany(
            "INSERT INTO agents (id, name, agent_type, status) VALUES (%s, %s, %s, 'Running')",
            [(n.agent_id, f"{n.name}-agent", n.detail) for n in with_agents],
        )
        await cur.executemany(
            "INSERT INTO supervision_nodes (id, node_id, node_type, node_type_detail, parent_node_id, agent_id,"
            " configuration, status) VALUES (%s, %s, %s::node_type, %s, %s, %s, %s, 'inactive'::node_status)",
            [(n.id, n.name, n.node_type, n.detail, n.parent and n.parent.id, n.agent_id, Jsonb({})) for n in tree],
        )
        await cur.execute(
            "UPDATE supervision_nodes SET status = 'active'::node_status, updated_at = NOW() WHERE id = ANY(%s)",
            [[n.id for n in tree]],
        )
        await cur.executemany(
            "UPDATE agents SET supervision_node_id = %s WHERE id = %s", [(n.id, n.agent_id) for n in with_agents]
        )
        await cur.executemany(
            "INSERT INTO agent_instances (id, agent_id, status, last_heartbeat, host_name, port)"
            " VALUES (%s, %s, 'running', NOW(), 'sim-host', %s)",
            [(n.instance_id, n.agent_id, 20000 + i) for i, n in enumerate(with_agents)],
        )
        await cur.executemany(UPSERT_POLICY, [(n.id, *DEFAULT_POLICY) for n in tree])
        await cur.executemany(
            UPSERT_CHILD, [(n.parent.id, n.name, n.id, n.instance_id, "Running", now, 0, 0) for n in tree if n.parent]
        )
    return len(tree)


async def load_sample(db: psycopg.AsyncConnection, size: int, rng: random.Random) -> list[tuple]:
    """Up to ``size`` agent nodes (id, name, parent, agent, agent status, node status, config...) from a random point
    of the primary key: an index range, not a sort of every node, and the same sample for the same seed."""
    start = uuid.UUID(int=rng.getrandbits(128))
    rows = await (await db.execute(SAMPLE.format(">="), [start, size])).fetchall()
    if len(rows) < size:
        rows += await (await db.execute(SAMPLE.format("<"), [start, size - len(rows)])).fetchall()
    return rows


async def record_failure(cur: psycopg.AsyncCursor, node_id: uuid.UUID, failure: Failure, context: dict) -> uuid.UUID:
    (failure_id,) = await fetch_one(
        cur,
        "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, stack_trace, context,"
        " correlation_id) VALUES (%s, %s::failure_reason, %s, %s, %s, %s) RETURNING id",
        [node_id, failure.reason, failure.detail, failure.stack_trace, Jsonb(context), uuid.uuid4()],
    )
    return failure_id


async def upsert_child(
    cur: psycopg.AsyncCursor,
    parent_id: uuid.UUID,
    node: tuple[str, uuid.UUID],
    state: str,
    *,
    instance_id: uuid.UUID | None = None,
    errors: int = 0,
    restarts: int = 0,
) -> None:
    """The node's row under its parent; counts are added to the existing ones, a heartbeat only when Running."""
    name, node_id = node
    beat = datetime.now(UTC) if state == "Running" else None
    await cur.execute(UPSERT_CHILD, [parent_id, name, node_id, instance_id, state, beat, errors, restarts])


async def new_instance(cur: psycopg.AsyncCursor, agent_id: uuid.UUID, port: int) -> uuid.UUID:
    """A running instance for a restarted agent; the agent's earlier live instances are stopped."""
    (instance_id,) = await fetch_one(
        cur,
        "INSERT INTO agent_instances (agent_id, status, last_heartbeat, host_name, port)"
        " VALUES (%s, 'running', NOW(), 'sim-host', %s) RETURNING id",
        [agent_id, port],
    )
    await cur.execute(
        "UPDATE agent_instances SET status = 'stopped' WHERE agent_id = %s AND id <> %s"
        " AND status IN ('starting', 'running', 'stopping')",
        [agent_id, instance_id],
    )
    return instance_id


async def agent_config(cur: Executor, agent_id: uuid.UUID) -> dict[str, Any]:
    """The agent's AgentConfig as the console's catalogue holds it (what a Spawned event carries)."""
    row = await fetch_one(cur, f"SELECT {', '.join(CONFIG_KEYS)} FROM agents WHERE id = %s", [agent_id])
    return dict(zip(CONFIG_KEYS, row, strict=True)) if row else {}


# The supervisor's decision after a failure, with the runtime's own SQL rules: should_restart(node), the
# attempt (restarts of the node inside the policy's window, plus one) and calculate_restart_delay. No row:
# the node has no policy, so should_restart says no.
RESTART_DECISION = """
    SELECT d.policy, d.allowed, d.attempt,
           CASE WHEN d.allowed THEN calculate_restart_delay(d.policy, d.attempt) END
    FROM (
        SELECT p.id AS policy, should_restart(p.node_id) AS allowed,
               1 + (SELECT count(*) FROM supervision_restarts r WHERE r.node_id = p.node_id
                    AND r.started_at > now() - make_interval(secs => p.time_window_seconds))::int AS attempt
        FROM supervision_policies p WHERE p.node_id = %s
    ) d
"""


async def restart_decision(cur: Executor, node_id: uuid.UUID) -> tuple[bool, int, int]:
    """(restart?, attempt, delay_ms) for a failed node, decided by should_restart and calculate_restart_delay."""
    row = await fetch_one(cur, RESTART_DECISION, [node_id])
    if row is None or not row[1]:
        return False, 0, 0
    return True, row[2], row[3]


async def begin_restart(cur: Executor, node_id: uuid.UUID, failure_id: uuid.UUID, attempt: int, delay: int) -> Any:
    """The supervisor's restart row (started, not completed) and the failure marked as handled by it."""
    await cur.execute(
        "UPDATE supervision_failures SET restart_attempted = true, recovery_action = 'restart' WHERE id = %s",
        [failure_id],
    )
    (restart_id,) = await fetch_one(
        cur,
        "INSERT INTO supervision_restarts (node_id, failure_id, restart_attempt_number, restart_delay_ms)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        [node_id, failure_id, attempt, delay],
    )
    return restart_id


async def complete_restart(
    cur: Executor, restart_id: Any, success: bool, error: str | None, instance_id: uuid.UUID | None
) -> None:
    await cur.execute(
        "UPDATE supervision_restarts SET completed_at = now(), success = %s, error_message = %s,"
        " new_instance_id = %s WHERE id = %s",
        [success, error, instance_id, restart_id],
    )


async def escalate(cur: Executor, failure_id: uuid.UUID, parent_name: str | None) -> None:
    """should_restart said no: the failure goes to the parent supervisor; the node stays failed."""
    action = f"escalated to {parent_name}" if parent_name else "escalated: no parent, left failed"
    await cur.execute(
        "UPDATE supervision_failures SET escalated_to_parent = %s, recovery_action = %s WHERE id = %s",
        [parent_name is not None, action, failure_id],
    )


BEAT_CHUNK = 1000  # ids per statement: a heartbeat batch stays one bounded statement per table


async def beat(db: psycopg.AsyncConnection, agent_ids: list[uuid.UUID]) -> None:
    """Heartbeats of the running instances of these agents, and of their Running child states."""
    for start in range(0, len(agent_ids), BEAT_CHUNK):
        chunk = agent_ids[start : start + BEAT_CHUNK]
        async with db.transaction():
            await db.execute(
                "UPDATE agent_instances SET last_heartbeat = now() WHERE status = 'running' AND agent_id = ANY(%s)",
                [chunk],
            )
            await db.execute(
                "UPDATE supervision_child_states c SET last_heartbeat = now() FROM supervision_nodes n"
                " WHERE c.child_node_id = n.id AND c.state = 'Running' AND n.agent_id = ANY(%s)",
                [chunk],
            )
