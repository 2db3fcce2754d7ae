"""Policy lint: each crash-loop rule as a pure function, then the rules as the policy form shows
them (the backtest endpoint's ``lint``) and as the admin's warnings after a save (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy
from supervision.policy_lint import (
    escalate_on_root,
    limit_reached_every_day,
    lint_saved,
    window_shorter_than_delays,
)
from tests.supervision.test_admin import policy_form
from tests.supervision.test_admin_concurrency import loaded_values
from tests.supervision.test_backtest import db_now

pytestmark = pytest.mark.django_db

# --- The rules, pure -----------------------------------------------------------------------------


def test_window_shorter_than_the_delays_of_the_restarts_it_allows():
    # max 5: four restarts before the limit; 4 x 15 s = 60 s, not less than a 60 s window: a loop.
    warning = window_shorter_than_delays(5, 60, [15_000] * 4)
    assert warning is not None and warning.rule == "window_shorter_than_delays"
    assert "4 restart(s) a window allows wait 60 s in all" in warning.message
    assert window_shorter_than_delays(5, 61, [15_000] * 4) is None  # 60 s < 61 s: the limit is reached
    assert window_shorter_than_delays(1, 1, []) is None  # max 1: never restarted, no loop
    assert window_shorter_than_delays(0, 1, []) is None


def test_delays_past_the_computed_attempts_count_at_the_last_ones_length():
    # 10,001 restarts allowed, 1,000 delays computed (all 100 ms): 10,001 x 0.1 s = 1000.1 s.
    assert window_shorter_than_delays(10_002, 1000, [100] * 1000) is not None
    assert window_shorter_than_delays(10_002, 1001, [100] * 1000) is None


def test_limit_reached_every_day_of_a_whole_period():
    assert limit_reached_every_day(3, {7: 7, 30: 12}).rule == "limit_reached_every_day"
    assert "every one of the last 7 days" in limit_reached_every_day(3, {7: 7, 30: 12}).message
    assert "last 30 days" in limit_reached_every_day(3, {7: 7, 30: 30}).message
    assert limit_reached_every_day(3, {7: 6, 30: 6}) is None
    assert limit_reached_every_day(3, {}) is None  # no period replayed whole: no claim
    assert limit_reached_every_day(3, {1: 1}) is None  # one day is no habit


def test_escalate_on_a_root():
    assert escalate_on_root("Escalate", "RootSupervisor", has_parent=False).rule == "escalate_on_root"
    assert escalate_on_root("Escalate", "Service", has_parent=False) is not None  # nothing above it
    assert escalate_on_root("Escalate", "Service", has_parent=True) is None
    assert escalate_on_root("OneForOne", "RootSupervisor", has_parent=False) is None


# --- Through the endpoint and the admin ----------------------------------------------------------


def root_policy(**settings) -> SupervisionPolicy:
    node = SupervisionNode.objects.create(node_id=f"root-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    return SupervisionPolicy.objects.create(node=node, **settings)


def test_the_endpoint_lints_the_edited_values_not_the_saved_ones(admin_client):
    policy = root_policy(max_restarts=5, time_window_seconds=60)
    data = {**policy_form(policy.node), "escalate_on_limit": "true"}
    data.pop("escalation_timeout_seconds")
    url = reverse("supervision:policy_backtest")
    assert admin_client.get(url, data).json()["lint"] == []
    edited = {**data, "supervision_strategy": "Escalate", "time_window_seconds": "1", "backoff_strategy": "Fixed"}
    edited["min_restart_delay_ms"] = "500"  # 4 restarts x 0.5 s >= the 1 s window
    edited.pop("backoff_factor")
    rules = [warning["rule"] for warning in admin_client.get(url, edited).json()["lint"]]
    assert rules == ["window_shorter_than_delays", "escalate_on_root"]


def test_a_history_at_the_limit_every_day_is_linted():
    policy = root_policy(max_restarts=2, time_window_seconds=60)
    now = db_now()
    for day in range(7):
        for seconds in (0, 1):
            SupervisionFailure.objects.create(
                node=policy.node,
                failure_reason="Crash",
                failure_detail="x",
                occurred_at=now - timedelta(days=day, hours=2, seconds=seconds),
            )
    assert [warning.rule for warning in lint_saved(policy)] == ["limit_reached_every_day"]
    policy.max_restarts = 3
    policy.save()
    assert lint_saved(policy) == []


def test_saving_a_crash_loop_prone_policy_saves_it_and_warns(admin_client):
    policy = root_policy()
    url = reverse("admin:supervision_supervisionpolicy_change", args=[policy.pk])
    data = policy_form(policy.node, supervision_strategy="Escalate", loaded_values=loaded_values(admin_client, url))
    response = admin_client.post(url, data, follow=True)
    policy.refresh_from_db()
    assert policy.supervision_strategy == "Escalate"  # a warning, never a refusal
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert any("Escalate on a root" in text for text in texts), texts
