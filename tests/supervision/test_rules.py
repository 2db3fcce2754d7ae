"""The Python restart rules answer exactly as the SQL functions do."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from supervision import rules
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy

pytestmark = pytest.mark.django_db


def make_node(name: str) -> SupervisionNode:
    return SupervisionNode.objects.create(node_id=name, node_type="RootSupervisor")


def sql_delays(policy: SupervisionPolicy, attempts: range) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT calculate_restart_delay(%s, a) FROM generate_series(%s, %s) AS a ORDER BY a",
            [policy.id, attempts.start, attempts.stop - 1],
        )
        return [row[0] for row in cursor.fetchall()]


FACTORS = [Decimal("1.01"), Decimal("1.50"), Decimal("1.75"), Decimal("2.00"), Decimal("3.33"), Decimal("99.99")]
BOUNDS = [(0, 0), (0, 5000), (100, 30000), (7, 2_000_000_000), (333, 334)]


@pytest.mark.parametrize("strategy", ["Fixed", "Linear", "Exponential"])
def test_delay_mirror_matches_sql(strategy):
    node = make_node(f"delay-{strategy}")
    policy = SupervisionPolicy.objects.create(node=node, backoff_strategy=strategy)
    attempts = range(0, 80)
    for factor, (low, high) in itertools.product(FACTORS, BOUNDS):
        SupervisionPolicy.objects.filter(pk=policy.pk).update(
            backoff_factor=factor, min_restart_delay_ms=low, max_restart_delay_ms=high
        )
        policy.refresh_from_db()
        expected = sql_delays(policy, attempts)
        assert [rules.restart_delay_ms(policy, a) for a in attempts] == expected, (factor, low, high)


def test_delay_with_null_factor_uses_the_column_default():
    policy = SupervisionPolicy.objects.create(node=make_node("null-factor"), backoff_factor=None)
    assert (
        [rules.restart_delay_ms(policy, a) for a in range(1, 6)]
        == sql_delays(policy, range(1, 6))
        == [
            100,
            200,
            400,
            800,
            1600,
        ]
    )


def test_delay_of_unknown_policy_raises():
    with pytest.raises(DatabaseError, match="not found"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT calculate_restart_delay(gen_random_uuid(), 1)")


def sql_should_restart(node: SupervisionNode) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT should_restart(%s)", [node.id])
        return cursor.fetchone()[0]


def test_should_restart_mirror_matches_sql_around_the_limit():
    node = make_node("window")
    assert sql_should_restart(node) is False
    assert rules.restart_allowed(None, 0) is False
    policy = SupervisionPolicy.objects.create(node=node, max_restarts=3, time_window_seconds=60)
    now = timezone.now()
    # Failures outside the window do not count.
    SupervisionFailure.objects.create(
        node=node, failure_reason="Crash", failure_detail="old", occurred_at=now - timedelta(minutes=5)
    )
    for count in range(0, 5):
        if count:
            SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="x", occurred_at=now)
        assert rules.restart_allowed(policy, count) is sql_should_restart(node) is (count < 3)
