"""The supervision tables written with the runtime's own statement shapes (CONTRACTS.md §1).

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

from mistersmith.demo import build_tree
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
MOVE_AGENT = """
    UPDATE agents a SET status = %s, state_changed_at = NOW(), updated_at = NOW()
    FROM (SELECT id, status FROM agents WHERE id = %s FOR UPDATE) old
    WHERE a.id = old.id AND old.status = ANY(%s)
    RETURNING old.status
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
    SELECT n.id, n.node_id, n.parent_node_id, n.agent_id, a.status, n.status::text
    FROM supervision_nodes n JOIN agents a ON a.id = n.agent_id
    WHERE n.node_type IN ('Worker', 'AgentSupervisor') AND n.id {} %s ORDER BY n.id LIMIT %s
"""


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
    """Up to ``size`` agent nodes (id, name, parent, agent, agent status, node status) from a random point
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


async def set_agent_status(cur: psycopg.AsyncCursor, agent_id: uuid.UUID, status: str) -> dict[str, Any]:
    """Set the status and return the agent's config (what a Spawned event carries)."""
    row = await fetch_one(
        cur,
        "UPDATE agents SET status = %s, state_changed_at = NOW(), updated_at = NOW() WHERE id = %s"
        f" RETURNING {', '.join(CONFIG_KEYS)}",
        [status, agent_id],
    )
    return dict(zip(CONFIG_KEYS, row, strict=True)) if row else {}
