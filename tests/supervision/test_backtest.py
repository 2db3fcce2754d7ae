"""Policy backtest through real PostgreSQL: a node's failures replayed through the runtime's rules
(should_restart's window count, the attempt, calculate_restart_delay), against figures computed by
hand for Fixed, Linear and Exponential backoff, escalations (error types, Escalate, the limit),
window edges, ties, the cap, unsaved values (staged and rolled back), and agreement with the
runtime's own ``should_restart`` for a failure at ``now()``.

Times are taken from the database's ``now()`` (the test's transaction start): the periods and the
windows are measured from it, so edges are exact."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection

from supervision import backtest
from supervision.backtest import backtest_saved, backtest_settings, settings_of
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy

pytestmark = pytest.mark.django_db


def db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def make_node(name: str = "svc", parent: SupervisionNode | None = None) -> SupervisionNode:
    if parent is None:
        return SupervisionNode.objects.create(node_id=f"{name}-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    return SupervisionNode.objects.create(
        node_id=f"{name}-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="svc", parent=parent
    )


def child_with_policy(**settings) -> tuple[SupervisionNode, SupervisionPolicy]:
    node = make_node("child", parent=make_node("root"))
    return node, SupervisionPolicy.objects.create(node=node, **settings)


def fail(node: SupervisionNode, at: datetime, reason: str = "Crash") -> None:
    SupervisionFailure.objects.create(node=node, failure_reason=reason, failure_detail="x", occurred_at=at)


def figures(result: backtest.Backtest, days: int) -> tuple[int, int, int, int, int]:
    """(failures, restarts, escalations, left, delay_ms) of one period."""
    period = result.period(days)
    return period.failures, period.restarts, period.escalations, period.left, period.delay_ms


FIXED = {"backoff_strategy": "Fixed", "min_restart_delay_ms": 100, "max_restart_delay_ms": 1000}


def test_fixed_backoff_restarts_until_the_limit_then_escalates_and_periods_split_by_age():
    node, policy = child_with_policy(max_restarts=3, time_window_seconds=60, **FIXED)
    now = db_now()
    burst = now - timedelta(hours=10)
    for seconds in (0, 10, 20, 30):  # in the window: 1, 2, 3, 4 failures: restart, restart, limit, limit
        fail(node, burst + timedelta(seconds=seconds))
    fail(node, now - timedelta(hours=5))  # alone in its window: restarted
    fail(node, now - timedelta(days=3))  # in 7 and 30 days only
    fail(node, now - timedelta(days=40))  # in no period
    result = backtest_saved(policy)
    assert figures(result, 1) == (5, 3, 2, 0, 300)
    assert figures(result, 7) == (6, 4, 2, 0, 400)
    assert figures(result, 30) == (6, 4, 2, 0, 400)
    assert result.replayed_since is None and result.covers(30)
    assert result.delays_ms == [100, 100]  # attempts 1..max_restarts-1, for the lint


def test_linear_backoff_numbers_attempts_by_the_restarts_inside_the_window_whose_start_is_excluded():
    node, policy = child_with_policy(
        max_restarts=10,
        time_window_seconds=60,
        backoff_strategy="Linear",
        min_restart_delay_ms=100,
        max_restart_delay_ms=10_000,
    )
    start = db_now() - timedelta(hours=2)
    for seconds in (0, 1, 2):  # attempts 1, 2, 3: 1100 + 2100 + 3100
        fail(node, start + timedelta(seconds=seconds))
    # (start + 1 s, start + 61 s]: the failure at start + 1 s is exactly at the edge, outside; the one
    # at start + 2 s inside: one restart before, so attempt 2 (2100 ms).
    fail(node, start + timedelta(seconds=61))
    assert figures(backtest_saved(policy), 1) == (4, 4, 0, 0, 1100 + 2100 + 3100 + 2100)


def test_exponential_backoff_is_capped_at_the_maximum_delay():
    node, policy = child_with_policy(
        max_restarts=10,
        time_window_seconds=600,
        backoff_strategy="Exponential",
        backoff_factor="2.00",
        min_restart_delay_ms=100,
        max_restart_delay_ms=1000,
    )
    start = db_now() - timedelta(minutes=30)
    for seconds in range(5):
        fail(node, start + timedelta(seconds=seconds))
    assert figures(backtest_saved(policy), 1) == (5, 5, 0, 0, 100 + 200 + 400 + 800 + 1000)


def test_error_types_escalate_at_once_and_still_count_in_the_window():
    node, policy = child_with_policy(
        max_restarts=3, time_window_seconds=60, escalate_on_error_types=["ResourceExhaustion"], **FIXED
    )
    start = db_now() - timedelta(minutes=30)
    fail(node, start, "Crash")  # restart, attempt 1
    fail(node, start + timedelta(seconds=1), "ResourceExhaustion")  # escalated at once
    fail(node, start + timedelta(seconds=2), "Crash")  # third in the window: the limit, escalated
    fail(node, start + timedelta(minutes=5), "Crash")  # a window of its own: restart
    assert figures(backtest_saved(policy), 1) == (4, 2, 2, 0, 200)


def test_escalate_strategy_escalates_every_failure_and_without_escalate_on_limit_failures_are_left():
    node, policy = child_with_policy(max_restarts=2, time_window_seconds=60, supervision_strategy="Escalate", **FIXED)
    start = db_now() - timedelta(minutes=30)
    for seconds in (0, 1, 2):
        fail(node, start + timedelta(seconds=seconds))
    assert figures(backtest_saved(policy), 1) == (3, 0, 3, 0, 0)
    policy.supervision_strategy, policy.escalate_on_limit = "OneForOne", False
    policy.save()
    assert figures(backtest_saved(policy), 1) == (3, 1, 0, 2, 100)


def test_failures_at_the_same_instant_are_met_one_after_the_other():
    node, policy = child_with_policy(max_restarts=2, time_window_seconds=60, **FIXED)
    at = db_now() - timedelta(minutes=10)
    fail(node, at)
    fail(node, at)  # the second of the two counts both: the limit
    assert figures(backtest_saved(policy), 1) == (2, 1, 1, 0, 100)


def test_a_long_window_reaches_back_before_the_period():
    """A failure 2 days ago is inside a 3-day window: the 1-day period's failure is the second."""
    node, policy = child_with_policy(max_restarts=2, time_window_seconds=3 * 86_400, **FIXED)
    now = db_now()
    fail(node, now - timedelta(days=2))
    fail(node, now - timedelta(hours=1))
    assert figures(backtest_saved(policy), 1) == (1, 0, 1, 0, 0)
    assert figures(backtest_saved(policy), 7) == (2, 1, 1, 0, 100)


def test_days_at_limit_count_the_days_on_which_should_restart_said_no():
    node, policy = child_with_policy(max_restarts=2, time_window_seconds=60, **FIXED)
    now = db_now()
    for day in range(7):
        at = now - timedelta(days=day, hours=1)
        fail(node, at)
        fail(node, at + timedelta(seconds=5))  # the limit, every day
    result = backtest_saved(policy)
    assert [result.period(days).days_at_limit for days in (1, 7, 30)] == [1, 7, 7]


def test_unsaved_settings_are_replayed_with_the_runtimes_function_and_rolled_back():
    node, policy = child_with_policy(max_restarts=5, time_window_seconds=60, **FIXED)
    start = db_now() - timedelta(hours=1)
    for seconds in range(4):
        fail(node, start + timedelta(seconds=seconds))
    saved_before = backtest_saved(policy)
    edited = {
        **settings_of(policy),
        "max_restarts": 3,
        "backoff_strategy": "Linear",
        "min_restart_delay_ms": 0,
        "max_restart_delay_ms": 60_000,
    }
    result = backtest_settings(node, edited)
    assert figures(result, 1) == (4, 2, 2, 0, 1000 + 2000)
    policy.refresh_from_db()
    assert (policy.max_restarts, policy.backoff_strategy) == (5, "Fixed")  # nothing was written
    assert backtest_saved(policy) == saved_before
    # The same values saved: the same figures.
    SupervisionPolicy.objects.filter(pk=policy.pk).update(**edited)
    policy.refresh_from_db()
    assert backtest_saved(policy).periods == result.periods


def test_unsaved_settings_for_a_node_without_a_policy_leave_it_without_one():
    node = make_node("child", parent=make_node("root"))
    fail(node, db_now() - timedelta(minutes=5))
    settings = settings_of(SupervisionPolicy(node=node, **FIXED))
    assert figures(backtest_settings(node, settings), 1) == (1, 1, 0, 0, 100)
    assert not SupervisionPolicy.objects.filter(node=node).exists()


def test_the_cap_replays_the_newest_failures_that_have_their_two_windows_whole(monkeypatch):
    monkeypatch.setattr(backtest, "REPLAY_CAP", 5)
    node, policy = child_with_policy(max_restarts=5, time_window_seconds=60, **FIXED)
    now = db_now()
    times = [now - timedelta(hours=hours) for hours in range(1, 21)]
    for at in times:
        fail(node, at)
    result = backtest_saved(policy)
    oldest_read = times[5]  # the cap + 1 newest are read
    assert result.replayed_since == oldest_read + timedelta(seconds=120)
    assert figures(result, 1) == (5, 5, 0, 0, 500)
    assert not result.covers(1)  # the 1-day period began before the replay did


def test_a_failure_at_now_is_restarted_exactly_when_should_restart_says_so():
    """The replay's rule against the runtime's own function, for random policies and histories."""
    rng = random.Random(15)
    for _ in range(25):
        window = rng.choice([5, 30, 60, 600])
        node, policy = child_with_policy(max_restarts=rng.randint(0, 6), time_window_seconds=window, **FIXED)
        now = db_now()
        for _ in range(rng.randint(0, 10)):
            fail(node, now - timedelta(seconds=rng.uniform(0, 2 * window)))
        before = backtest_saved(policy).period(1)
        fail(node, now)  # recorded first, as the runtime does; then its supervisor asks
        with connection.cursor() as cursor:
            cursor.execute("SELECT should_restart(%s)", [node.pk])
            allowed = cursor.fetchone()[0]
        after = backtest_saved(policy).period(1)
        assert (after.restarts - before.restarts == 1) == allowed
        assert after.failures == before.failures + 1


def test_one_statement_per_policy(django_assert_max_num_queries):
    node, policy = child_with_policy(max_restarts=3, time_window_seconds=60, **FIXED)
    fail(node, db_now() - timedelta(minutes=1))
    with django_assert_max_num_queries(1):
        backtest_saved(policy)
