"""The one diff of two tree states (supervision/state_diff.py): pure, so tested as a function."""

import uuid
from decimal import Decimal

from supervision.state_diff import NodeState, diff_trees, policy_field_changes

ROOT, A, B, C = (uuid.uuid4() for _ in range(4))
POLICY = {
    "supervision_strategy": "OneForOne",
    "max_restarts": 5,
    "time_window_seconds": 60,
    "backoff_strategy": "Exponential",
    "backoff_factor": Decimal("2.00"),
    "min_restart_delay_ms": 100,
    "max_restart_delay_ms": 30000,
    "escalate_on_limit": True,
    "escalate_on_error_types": ["Crash", "HeartbeatTimeout"],
    "escalation_timeout_seconds": 10,
}


def state(name, status="active", parent=ROOT, policy=None):
    return NodeState(name=name, node_type="Worker", status=status, parent=parent, policy=policy)


def test_equal_trees_have_no_diff():
    tree = {ROOT: state("root", parent=None, policy=POLICY), A: state("a")}
    diff = diff_trees(tree, dict(tree))
    assert diff.is_empty()
    assert diff.as_json() == {"added": [], "removed": [], "changed": []}


def test_added_removed_and_changed_nodes_are_told_apart():
    before = {ROOT: state("root", parent=None), A: state("a"), B: state("b", policy=POLICY)}
    after = {
        ROOT: state("root", parent=None),
        A: state("a", status="failed", parent=B),
        B: state("b", policy={**POLICY, "max_restarts": 3}),
        C: state("c"),
    }
    diff = diff_trees(before, after)
    assert [node for node, _ in diff.added] == [C]
    assert diff.removed == []
    assert [change.node for change in diff.changed] == [A, B]
    status_change = diff.changed[0]
    assert status_change.status_changed and status_change.parent_changed and not status_change.policy_changes
    assert [(item.field, item.before, item.after) for item in diff.policy_changes[0].policy_changes] == [
        ("max_restarts", 5, 3)
    ]
    assert diff.status_changes == [status_change]
    removed = diff_trees(after, before)
    assert [node for node, _ in removed.removed] == [C]
    assert removed.as_json()["changed"][0]["status"] == ["failed", "active"]


def test_policy_values_compare_across_sources():
    """A snapshot holds the factor as JSON text or a float and error types in any order."""
    from_json = {**POLICY, "backoff_factor": "2.0", "escalate_on_error_types": ["HeartbeatTimeout", "Crash"]}
    assert policy_field_changes(POLICY, from_json) == ()
    assert policy_field_changes(POLICY, {**POLICY, "escalate_on_limit": False})[0].field == "escalate_on_limit"


def test_a_policy_added_or_removed_is_a_change_of_every_field():
    changes = policy_field_changes(None, POLICY)
    assert {item.field for item in changes} == set(POLICY)
    assert all(item.before is None for item in changes)
    assert policy_field_changes(POLICY, None)[1].after is None
    diff = diff_trees({A: state("a")}, {A: state("a", policy=POLICY)})
    assert diff.as_json()["changed"][0]["policy"][4] == {"field": "backoff_factor", "before": None, "after": "2.00"}
