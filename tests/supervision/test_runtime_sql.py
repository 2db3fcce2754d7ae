"""The schema accepts the runtime's own SQL unchanged (CONTRACTS.md §1)."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

pytestmark = pytest.mark.django_db


def run(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def insert_node(name: str, node_type: str, detail: str | None, parent=None, agent=None) -> uuid.UUID:
    return run(
        "INSERT INTO supervision_nodes (node_id, node_type, node_type_detail, parent_node_id, agent_id)"
        " VALUES (%s, %s::node_type, %s, %s, %s) RETURNING id",
        [name, node_type, detail, parent, agent],
    )[0][0]


def insert_agent(name: str) -> uuid.UUID:
    return run(
        "INSERT INTO agents (id, name, agent_type, status) VALUES (gen_random_uuid(), %s, 'claude', 'Running') RETURNING id",
        [name],
    )[0][0]


def upsert_policy(
    node: uuid.UUID,
    strategy="OneForOne",
    max_restarts=5,
    window=60,
    backoff="Exponential",
    factor=2.0,
    lo=100,
    hi=30000,
):
    return run(
        """
        INSERT INTO supervision_policies (node_id, supervision_strategy, max_restarts, time_window_seconds,
            backoff_strategy, backoff_factor, min_restart_delay_ms, max_restart_delay_ms)
        VALUES (%s, %s::supervision_strategy, %s, %s, %s::backoff_strategy, %s, %s, %s)
        ON CONFLICT (node_id) DO UPDATE SET supervision_strategy = EXCLUDED.supervision_strategy,
            max_restarts = EXCLUDED.max_restarts, time_window_seconds = EXCLUDED.time_window_seconds,
            backoff_strategy = EXCLUDED.backoff_strategy, backoff_factor = EXCLUDED.backoff_factor,
            min_restart_delay_ms = EXCLUDED.min_restart_delay_ms, max_restart_delay_ms = EXCLUDED.max_restart_delay_ms
        RETURNING id
        """,
        [node, strategy, max_restarts, window, backoff, factor, lo, hi],
    )[0][0]


def test_enum_types_have_exactly_the_contract_labels():
    rows = run(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t"
        " JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
    )
    labels = dict(rows)
    assert labels["node_type"] == ["RootSupervisor", "AgentSupervisor", "Worker", "Service"]
    assert labels["node_status"] == ["active", "inactive", "failed", "terminated"]
    assert labels["supervision_strategy"] == ["OneForOne", "OneForAll", "RestForOne", "Escalate"]
    assert labels["backoff_strategy"] == ["Fixed", "Linear", "Exponential"]
    assert labels["failure_reason"] == [
        "Crash",
        "HeartbeatTimeout",
        "ResourceExhaustion",
        "UnhandledError",
        "ExternalFailure",
    ]
    assert labels["child_state"] == ["Starting", "Running", "Failed", "Stopped"]


def test_runtime_inserts_upserts_and_tree():
    agent = insert_agent("worker-agent")
    root = insert_node("root", "RootSupervisor", None)
    sup = insert_node("sup-a", "AgentSupervisor", "team", root, agent)
    worker = insert_node("worker-1", "Worker", "claude", sup, agent)
    service = insert_node("svc", "Service", "db", root)

    first = upsert_policy(sup, max_restarts=3)
    second = upsert_policy(sup, strategy="OneForAll", max_restarts=7)
    assert first == second
    assert run(
        "SELECT supervision_strategy::text, max_restarts FROM supervision_policies WHERE node_id = %s", [sup]
    ) == [("OneForAll", 7)]

    instance = run(
        "INSERT INTO agent_instances (id, agent_id, status, host_name, port) VALUES (gen_random_uuid(), %s, 'running', 'h', 8080) RETURNING id",
        [agent],
    )[0][0]
    for state in ("Starting", "Running"):
        run(
            """INSERT INTO supervision_child_states (node_id, child_id, child_node_id, instance_id, state)
               VALUES (%s, 'w1', %s, %s, %s::child_state)
               ON CONFLICT (node_id, child_id) DO UPDATE SET state = EXCLUDED.state, restart_count = supervision_child_states.restart_count + 1""",
            [sup, worker, instance, state],
        )
    assert run("SELECT state::text, restart_count FROM supervision_child_states WHERE node_id = %s", [sup]) == [
        ("Running", 1)
    ]

    failure = run(
        "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail) VALUES (%s, 'Crash'::failure_reason, 'boom') RETURNING id",
        [worker],
    )[0][0]
    restart = run(
        "INSERT INTO supervision_restarts (node_id, failure_id, restart_attempt_number, restart_delay_ms) VALUES (%s, %s, 1, 100) RETURNING id",
        [worker, failure],
    )[0][0]
    new_instance = uuid.uuid4()
    run(
        "UPDATE supervision_restarts SET completed_at = now(), success = true, error_message = NULL, new_instance_id = %s WHERE id = %s",
        [new_instance, restart],
    )

    tree = run("SELECT * FROM get_supervision_tree(NULL)")
    assert [(r[1], r[4], r[5]) for r in tree] == [
        ("root", 0, ["root"]),
        ("sup-a", 1, ["root", "sup-a"]),
        ("worker-1", 2, ["root", "sup-a", "worker-1"]),
        ("svc", 1, ["root", "svc"]),
    ]
    assert {r[0]: r[3] for r in tree}[worker] == sup
    subtree = run("SELECT node_name FROM get_supervision_tree(%s)", [sup])
    assert [r[0] for r in subtree] == ["sup-a", "worker-1"]
    assert service in {r[0] for r in tree}


def test_updated_at_trigger_moves_on_update():
    root = insert_node("trig-root", "RootSupervisor", None)
    run("UPDATE supervision_nodes SET updated_at = '2000-01-01' WHERE id = %s", [root])
    (updated,) = run("SELECT updated_at > now() - interval '1 minute' FROM supervision_nodes WHERE id = %s", [root])[0]
    assert updated


def test_delete_cascades_through_the_tree_and_history():
    root = insert_node("c-root", "RootSupervisor", None)
    child = insert_node("c-svc", "Service", "x", root)
    upsert_policy(child)
    run("INSERT INTO supervision_failures (node_id, failure_reason, failure_detail) VALUES (%s, 'Crash', 'x')", [child])
    run("DELETE FROM supervision_nodes WHERE id = %s", [root])
    assert run("SELECT count(*) FROM supervision_nodes WHERE id IN (%s, %s)", [root, child]) == [(0,)]
    assert run("SELECT count(*) FROM supervision_failures WHERE node_id = %s", [child]) == [(0,)]
    assert run("SELECT count(*) FROM supervision_policies WHERE node_id = %s", [child]) == [(0,)]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO supervision_nodes (node_id, node_type, node_type_detail) VALUES ('r', 'RootSupervisor', 'no')",
        "INSERT INTO supervision_nodes (node_id, node_type) VALUES ('s', 'Service')",
        "INSERT INTO supervision_nodes (node_id, node_type, node_type_detail) VALUES ('w', 'Worker', 'x')",
    ],
)
def test_node_checks_refuse_bad_rows(sql):
    with pytest.raises(IntegrityError), transaction.atomic():
        run(sql)


def test_policy_checks_refuse_bad_rows():
    node = insert_node("p-root", "RootSupervisor", None)
    for kwargs in ({"lo": 500, "hi": 100}, {"factor": 1.0}, {"max_restarts": -1}, {"window": 0}):
        with pytest.raises(IntegrityError), transaction.atomic():
            upsert_policy(node, **kwargs)


def test_restart_completion_check_and_detail_length():
    node = insert_node("r-root", "RootSupervisor", None)
    with pytest.raises(IntegrityError), transaction.atomic():
        run(
            "INSERT INTO supervision_restarts (node_id, restart_attempt_number, restart_delay_ms, success) VALUES (%s, 1, 0, true)",
            [node],
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        run(
            "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail) VALUES (%s, 'Crash', %s)",
            [node, "x" * 5001],
        )


def test_agents_accept_rows_with_only_the_contract_columns():
    agent = run(
        "INSERT INTO agents (id, name, agent_type, status, supervision_node_id) VALUES (gen_random_uuid(), 'a', 't', 'Idle', NULL) RETURNING id, model, timeout_seconds, memory_limit_mb, enable_mcp"
    )[0]
    assert agent[1:] == ("claude-3-5-sonnet-20241022", 300, 512, True)
    run(
        "INSERT INTO agent_instances (id, agent_id, status, last_heartbeat, host_name, port) VALUES (gen_random_uuid(), %s, 'crashed', now(), 'h', 1)",
        [agent[0]],
    )
