"""The history of node states (migration 0006): the triggers record every writer's changes (the
runtime's own SQL shapes, the console's admin edits with the user), never break those writes, and
the history is pruned and carried by snapshots like the rest of the state.

These tests commit (``transaction=True``): a trigger stamps a version with the transaction's
``now()``, so changes must come in separate transactions to be separate versions.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from mistersmith.operations import retention
from mistersmith.operations.snapshots import tables as snapshot_tables
from supervision import history, policies
from supervision.models import SupervisionNode, SupervisionNodeHistory, SupervisionPolicy
from tests.supervision.test_admin import node_form, post_node

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = uuid.UUID("00000000-0000-4000-8000-000000000001")
CHILD = uuid.UUID("00000000-0000-4000-8000-000000000002")


def run(sql: str, params: dict | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})


def runtime_insert_tree() -> None:
    """As the runtime writes: enum casts, policy upsert with ON CONFLICT (node_id), RETURNING."""
    run(
        "INSERT INTO supervision_nodes (id, node_id, node_type, status) "
        "VALUES (%(root)s, 'h-root', 'RootSupervisor'::node_type, 'active'::node_status) RETURNING id",
        {"root": ROOT},
    )
    run(
        "INSERT INTO supervision_nodes (id, node_id, node_type, node_type_detail, status, parent_node_id) "
        "VALUES (%(child)s, 'h-service', 'Service'::node_type, 'db', 'active'::node_status, %(root)s)",
        {"root": ROOT, "child": CHILD},
    )
    upsert_policy(5)


def upsert_policy(max_restarts: int) -> None:
    run(
        """
        INSERT INTO supervision_policies (node_id, supervision_strategy, max_restarts, time_window_seconds,
            backoff_strategy, backoff_factor, min_restart_delay_ms, max_restart_delay_ms)
        VALUES (%(node)s, 'OneForOne'::supervision_strategy, %(max)s, 60, 'Exponential'::backoff_strategy,
            2.0, 100, 30000)
        ON CONFLICT (node_id) DO UPDATE SET max_restarts = EXCLUDED.max_restarts, updated_at = now()
        RETURNING id
        """,
        {"node": CHILD, "max": max_restarts},
    )


def versions(node: uuid.UUID) -> list[SupervisionNodeHistory]:
    return list(SupervisionNodeHistory.objects.filter(node=node).order_by("valid_from", "id"))


def test_runtime_sql_is_recorded_version_by_version():
    runtime_insert_tree()
    run("UPDATE supervision_nodes SET status = 'failed'::node_status WHERE id = %(child)s", {"child": CHILD})
    upsert_policy(7)
    run("UPDATE supervision_nodes SET metadata = '{\"seen\": 1}' WHERE id = %(child)s", {"child": CHILD})

    child = versions(CHILD)
    assert [(v.change, v.status, v.policy and v.policy["max_restarts"]) for v in child] == [
        ("created", "active", None),
        ("policy", "active", 5),
        ("status", "failed", 5),
        ("policy", "failed", 7),
    ]  # the metadata update is no version: nothing the tree shows changed
    assert all(v.valid_to == n.valid_from for v, n in itertools.pairwise(child))
    assert child[-1].valid_to is None
    assert child[-1].parent_node_id == ROOT and child[-1].changed_by is None
    assert SupervisionNode.objects.get(pk=CHILD).status == "failed"  # the runtime's writes stand


def test_a_deleted_node_ends_its_version_with_its_children():
    runtime_insert_tree()
    run("DELETE FROM supervision_nodes WHERE id = %(root)s", {"root": ROOT})
    assert not SupervisionNodeHistory.objects.filter(valid_to__isnull=True).exists()
    assert SupervisionNodeHistory.objects.filter(node=CHILD).count() == 2


def test_changes_in_one_transaction_are_one_version():
    with transaction.atomic():
        runtime_insert_tree()
        run("UPDATE supervision_nodes SET status = 'failed'::node_status WHERE id = %(child)s", {"child": CHILD})
    (only,) = versions(CHILD)
    assert (only.change, only.status, only.policy["max_restarts"]) == ("created", "failed", 5)


def test_an_admin_edit_is_recorded_with_the_user(admin_client, admin_user):
    runtime_insert_tree()
    node = SupervisionNode.objects.get(pk=CHILD)
    form = node_form(node_id="h-service", node_type_detail="db", status="inactive", parent=str(ROOT))
    response = post_node(admin_client, form, node=node)
    assert response.status_code == 302, response.context["adminform"].form.errors
    latest = versions(CHILD)[-1]
    assert (latest.status, latest.change, latest.changed_by) == ("inactive", "status", admin_user.username)


def test_a_policy_saved_by_the_policy_service_names_its_user(admin_user):
    runtime_insert_tree()
    policy = SupervisionPolicy.objects.get(node_id=CHILD)
    policy.max_restarts = 9
    policies.save_policy(policy, admin_user)
    latest = versions(CHILD)[-1]
    assert (latest.change, latest.policy["max_restarts"], latest.changed_by) == ("policy", 9, admin_user.username)
    # the actor is transaction-local: the next (runtime) change is nobody's
    upsert_policy(3)
    assert versions(CHILD)[-1].changed_by is None


def test_the_seed_gives_every_node_an_open_version_once():
    runtime_insert_tree()
    run("DELETE FROM supervision_node_history")
    assert history.record_missing() == 2
    assert history.record_missing() == 0
    assert set(SupervisionNodeHistory.objects.values_list("change", flat=True)) == {"known"}


def test_recording_paused_for_a_transaction_records_nothing():
    with transaction.atomic():
        history.pause_recording()
        runtime_insert_tree()
    assert not SupervisionNodeHistory.objects.exists()
    run(
        "UPDATE supervision_nodes SET status = 'failed'::node_status WHERE id = %(root)s", {"root": ROOT}
    )  # the next transaction records again
    assert SupervisionNodeHistory.objects.filter(node=ROOT).count() == 1


def test_truncate_ends_every_open_version():
    runtime_insert_tree()
    run("TRUNCATE supervision_nodes CASCADE")
    assert not SupervisionNodeHistory.objects.filter(valid_to__isnull=True).exists()


def test_retention_prunes_versions_ended_before_the_cutoff(settings):
    runtime_insert_tree()
    run("UPDATE supervision_nodes SET status = 'failed'::node_status WHERE id = %(child)s", {"child": CHILD})
    old = timezone.now() - timedelta(days=200)
    SupervisionNodeHistory.objects.filter(valid_to__isnull=False).update(
        valid_from=old - timedelta(days=1), valid_to=old
    )
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "failures": 90}
    results = retention.prune(only=["failures"])
    pruned = next(result for result in results if result.table == "supervision_node_history")
    assert pruned.deleted == 2  # the child's two closed versions; open ones stay whatever their age
    assert SupervisionNodeHistory.objects.filter(valid_to__isnull=True).count() == 2


def test_snapshots_carry_the_history():
    assert "supervision_node_history" in {spec.table for spec in snapshot_tables.state_tables()}
