"""Restart budgets through real PostgreSQL: used of max in the policy's window, when the next slot
frees, the escalation forecast and its parent, the all-nodes summary, and agreement with the
runtime's own ``should_restart`` for many random policies and failure sets.

Times are taken from the database's ``now()`` (the transaction's start, the instant
``should_restart`` measures from), so window edges are exact."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection

from supervision import budgets, selectors
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy

pytestmark = pytest.mark.django_db


def db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def make_node(name: str, parent: SupervisionNode | None = None) -> SupervisionNode:
    if parent is None:
        return SupervisionNode.objects.create(node_id=f"{name}-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    return SupervisionNode.objects.create(
        node_id=f"{name}-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="svc", parent=parent
    )


def fail(node: SupervisionNode, at: datetime) -> None:
    SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="x", occurred_at=at)


def budget_of(node: SupervisionNode) -> dict | None:
    return selectors.node_budget(node.pk)


def should_restart(node: SupervisionNode) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT should_restart(%s)", [node.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def family() -> tuple[SupervisionNode, SupervisionNode]:
    root = make_node("b-root")
    child = make_node("b-child", root)
    return root, child


def test_used_next_slot_and_state_from_known_failures(family):
    _, child = family
    SupervisionPolicy.objects.create(node=child, max_restarts=5, time_window_seconds=60)
    now = db_now()
    for seconds_ago in (10, 30, 90):  # two in the window, one before it
        fail(child, now - timedelta(seconds=seconds_ago))
    budget = budget_of(child)
    assert budget["used"] == 2 and budget["max"] == 5 and budget["window_seconds"] == 60
    assert budget["state"] == budgets.OK and budget["allowed"] is True
    # The oldest failure in the window (30 s ago) leaves it 30 s from now.
    assert datetime.fromisoformat(budget["next_slot_at"]) == now + timedelta(seconds=30)
    assert budget["escalates"] is False and budget["escalates_to"] is None


def test_window_edges_follow_the_runtime(family):
    _, child = family
    SupervisionPolicy.objects.create(node=child, max_restarts=2, time_window_seconds=60)
    now = db_now()
    fail(child, now - timedelta(seconds=60))  # exactly the window's start: outside (occurred_at > now - window)
    assert budget_of(child)["used"] == 0 and budget_of(child)["next_slot_at"] is None
    fail(child, now - timedelta(seconds=59, microseconds=999_000))  # just inside
    budget = budget_of(child)
    assert budget["used"] == 1 and budget["state"] == budgets.LAST_SLOT
    assert datetime.fromisoformat(budget["next_slot_at"]) == now + timedelta(microseconds=1000)
    fail(child, now)
    budget = budget_of(child)
    assert budget["used"] == 2 and budget["state"] == budgets.EXHAUSTED
    assert budget["allowed"] is False is should_restart(child)


def test_no_policy_no_budget(family):
    root, _ = family
    fail(root, db_now())
    assert budget_of(root) is None
    assert should_restart(root) is False


def test_one_more_failure_escalates_to_the_named_parent(family):
    root, child = family
    SupervisionPolicy.objects.create(node=child, max_restarts=3, time_window_seconds=60)
    now = db_now()
    fail(child, now - timedelta(seconds=5))
    assert budget_of(child)["escalates"] is False  # 1 used of 3: two more failures to go
    fail(child, now - timedelta(seconds=1))
    budget = budget_of(child)
    assert budget["escalates"] is True and budget["allowed"] is True
    assert budget["escalates_to"] == {"id": str(root.pk), "name": root.node_id}


def test_no_escalation_warning_without_escalate_on_limit(family):
    _, child = family
    SupervisionPolicy.objects.create(node=child, max_restarts=1, time_window_seconds=60, escalate_on_limit=False)
    fail(child, db_now())
    budget = budget_of(child)
    assert budget["state"] == budgets.EXHAUSTED and budget["escalates"] is False and budget["escalates_to"] is None


def test_a_root_escalates_with_no_parent_to_name():
    root = make_node("b-lone")
    SupervisionPolicy.objects.create(node=root, max_restarts=1, time_window_seconds=60)
    budget = budget_of(root)
    assert budget["used"] == 0 and budget["escalates"] is True and budget["escalates_to"] is None


def test_budgets_agree_with_should_restart_for_random_policies_and_failures():
    """Many random policies and failure sets: the budget's "allowed" is the runtime's answer, the
    row's own should_restart column too, and the all-nodes summary counts what the rows say."""
    rng = random.Random(15)
    root = make_node("b-rand-root")
    now = db_now()
    nodes = []
    for index in range(120):
        node = make_node(f"b-rand-{index}", root)
        if rng.random() < 0.9:
            SupervisionPolicy.objects.create(
                node=node,
                max_restarts=rng.randint(0, 6),
                # Both paths of the all-nodes count: windows up to an hour, and longer ones.
                time_window_seconds=rng.choice([1, 5, 30, 60, 300, 600, budgets.LONG_WINDOW_SECONDS, 7200]),
                escalate_on_limit=rng.random() < 0.7,
            )
        for _ in range(rng.randint(0, 9)):
            fail(node, now - timedelta(seconds=rng.uniform(0, 9000)))
        nodes.append(node)
    summary = budgets.budget_summary()
    rows = {row["id"]: row for row in selectors.nodes_for_refresh([n.pk for n in nodes])}
    for node in nodes:
        row = rows[str(node.pk)]
        runtime = should_restart(node)
        assert row["restart_allowed"] is runtime
        assert (row["budget"] is not None and row["budget"]["allowed"]) is runtime
    states = [budgets.NO_POLICY if r["budget"] is None else r["budget"]["state"] for r in rows.values()]
    escalating = sum(1 for r in rows.values() if r["budget"] and r["budget"]["escalates"])
    assert len(set(states)) == 4 and escalating  # the random set covers every state
    # The summary counts every node in the (test) database: these and the root, without a policy.
    for state in (budgets.EXHAUSTED, budgets.LAST_SLOT, budgets.OK):
        assert summary[state] == states.count(state)
    assert summary[budgets.NO_POLICY] == states.count(budgets.NO_POLICY) + 1
    assert summary["escalating"] == escalating
    filtered = selectors.filtered_tree(escalating=True)
    expected = {str(n.pk) for n in nodes if rows[str(n.pk)]["budget"] and rows[str(n.pk)]["budget"]["escalates"]}
    assert set(filtered.matches) == expected


def test_the_row_carries_the_runtime_answer_beside_the_budget(family):
    """The tree's statement reads should_restart(node) beside the budget's own count."""
    _, child = family
    SupervisionPolicy.objects.create(node=child, max_restarts=1, time_window_seconds=60)
    fail(child, db_now())
    (row,) = selectors._fetch_nodes(
        "selection AS (SELECT %(node)s::uuid AS id, true AS in_page, NULL::boolean AS matched)", {"node": child.pk}
    )
    assert row["runtime_should_restart"] is False and row["failures_in_window"] == 1
