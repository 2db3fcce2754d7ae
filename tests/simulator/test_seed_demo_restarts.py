"""manage.py seed_demo: seeded failures and restarts follow each node's policy, as the runtime's SQL rules."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def one_row(query: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()


def test_seeded_restarts_follow_their_policies():
    out = io.StringIO()
    # Many failures on few nodes over one day: windows fill up, so limits and escalations are reached.
    call_command("seed_demo", "--nodes", "12", "--failures", "40000", "--days", "1", "--no-hive", stdout=out)
    counts = json.loads(out.getvalue())
    assert counts["failures"] == 40000 and 0 < counts["restarts"] < counts["failures"]

    # Attempt = the node's failures inside the policy's window up to this one (should_restart's count);
    # delay = calculate_restart_delay(policy, attempt), the runtime's own SQL function.
    wrong_attempt, wrong_delay, checked = one_row(
        """
        SELECT count(*) FILTER (WHERE r.restart_attempt_number <> (
                   SELECT count(*) FROM supervision_failures g WHERE g.node_id = f.node_id
                   AND g.occurred_at >= f.occurred_at - make_interval(secs => p.time_window_seconds)
                   AND g.occurred_at <= f.occurred_at)),
               count(*) FILTER (WHERE r.restart_delay_ms <> calculate_restart_delay(p.id, r.restart_attempt_number)),
               count(*)
        FROM supervision_restarts r
        JOIN supervision_failures f ON f.id = r.failure_id
        JOIN supervision_policies p ON p.node_id = r.node_id
        """
    )
    assert checked == counts["restarts"] and (wrong_attempt, wrong_delay) == (0, 0)

    # Never more restarts inside a window than max_restarts (sliding: every window ending at a restart).
    (over_limit,) = one_row(
        """
        SELECT count(*) FROM supervision_restarts r
        JOIN supervision_policies p ON p.node_id = r.node_id
        JOIN supervision_failures f ON f.id = r.failure_id
        WHERE (SELECT count(*) FROM supervision_restarts o JOIN supervision_failures of ON of.id = o.failure_id
               WHERE o.node_id = r.node_id AND of.occurred_at <= f.occurred_at
               AND of.occurred_at > f.occurred_at - make_interval(secs => p.time_window_seconds)) > p.max_restarts
        """
    )
    assert over_limit == 0

    # Every failure is decided as should_restart would: restarted below the limit, never without a policy;
    # at the limit escalated when the policy escalates.
    restarted_at_limit, without_policy, unescalated, limited = one_row(
        """
        SELECT count(*) FILTER (WHERE f.restart_attempted AND (f.context->>'window_count')::int >= p.max_restarts),
               count(*) FILTER (WHERE p.id IS NULL AND (f.restart_attempted OR f.escalated_to_parent)),
               count(*) FILTER (WHERE p.escalate_on_limit AND NOT f.restart_attempted AND NOT f.escalated_to_parent),
               count(*) FILTER (WHERE p.id IS NOT NULL AND NOT f.restart_attempted)
        FROM supervision_failures f LEFT JOIN supervision_policies p ON p.node_id = f.node_id
        """
    )
    assert (restarted_at_limit, without_policy, unescalated) == (0, 0, 0)
    assert limited > 0, "the seed should reach some limits"
    (restarts_of_unrestarted,) = one_row(
        "SELECT count(*) FROM supervision_restarts r JOIN supervision_failures f ON f.id = r.failure_id"
        " WHERE NOT f.restart_attempted"
    )
    assert restarts_of_unrestarted == 0
    (strategies,) = one_row(
        "SELECT array_agg(DISTINCT p.backoff_strategy::text) FROM supervision_restarts r"
        " JOIN supervision_policies p ON p.node_id = r.node_id"
    )
    assert {"Linear", "Exponential"} <= set(strategies), "delays of more than one rule were checked"
