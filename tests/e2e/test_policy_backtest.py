"""The policy form's backtest panel and lint (issue 15, item 2), in Chromium: the saved policy's
figures beside the edited values', both updating as a field changes, and the crash-loop warnings
coming and going before anything is saved; then a save that warns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def policy():
    """A worker that hits its limit every day: four failures 5 s apart, each of the last 7 days."""
    root = SupervisionNode.objects.create(node_id="billing-root", node_type="RootSupervisor")
    node = SupervisionNode.objects.create(
        node_id="billing-worker", node_type="Service", node_type_detail="api", parent=root
    )
    now = timezone.now()
    SupervisionFailure.objects.bulk_create(
        SupervisionFailure(
            node=node,
            failure_reason="Crash",
            failure_detail="exit 137",
            occurred_at=now - timedelta(days=day, hours=2) + timedelta(seconds=5 * n),
        )
        for day in range(7)
        for n in range(4)
    )
    return SupervisionPolicy.objects.create(
        node=node,
        max_restarts=3,
        time_window_seconds=60,
        backoff_strategy="Fixed",
        min_restart_delay_ms=100,
        max_restart_delay_ms=1000,
    )


def test_the_backtest_and_the_lint_follow_the_edited_values(logged_in_page, live_server, policy):
    page = logged_in_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/admin/supervision/supervisionpolicy/{policy.pk}/change/")
    panel = page.locator("div.policy-backtest")
    day, week = panel.locator("tr[data-days='1']"), panel.locator("tr[data-days='7']")
    saved_day = "2 restarts, 2 escalations, 0.2 s of restart delay (4 failures)"
    expect(day.locator("td.saved")).to_have_text(saved_day)
    expect(day.locator("td.edited")).to_have_text(saved_day)  # nothing edited yet
    expect(week.locator("td.saved")).to_have_text("14 restarts, 14 escalations, 1.4 s of restart delay (28 failures)")
    lint = panel.locator("ul.policy-lint li")
    expect(lint).to_have_count(1)
    expect(lint.first).to_have_attribute("data-rule", "limit_reached_every_day")

    page.fill("#id_max_restarts", "10")  # enough for every burst: the daily limit warning goes
    expect(day.locator("td.edited")).to_have_text("4 restarts, 0 escalations, 0.4 s of restart delay (4 failures)")
    expect(day.locator("td.saved")).to_have_text(saved_day)
    expect(lint).to_have_count(0)

    page.fill("#id_min_restart_delay_ms", "500")
    page.fill("#id_time_window_seconds", "1")  # 9 restarts x 0.5 s outlast a 1 s window: a crash loop
    expect(lint).to_have_count(1)
    expect(lint.first).to_have_attribute("data-rule", "window_shorter_than_delays")
    expect(lint.first).to_contain_text("Crash loop")
    expect(day.locator("td.edited")).to_have_text("4 restarts, 0 escalations, 2 s of restart delay (4 failures)")
    docs_screenshot(page.locator(".form-row.field-policy_backtest"), "policy-backtest")

    page.fill("#id_max_restarts", "-1")  # refused by the form's own validation: said, not thrown
    expect(panel).to_have_attribute("data-state", "error")
    expect(day.locator("td.edited")).to_contain_text("These values are not a valid policy")
    page.fill("#id_max_restarts", "10")
    expect(panel).to_have_attribute("data-state", "ready")

    page.click("input[name=_continue]")  # saved anyway, with the warning as a message
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(page.locator(".messagelist .warning")).to_contain_text("Crash loop")
    policy.refresh_from_db()
    assert (policy.max_restarts, policy.time_window_seconds) == (10, 1)
    assert errors == []


def test_the_node_pages_inline_has_the_panel_too(logged_in_page, live_server, policy):
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionnode/{policy.node_id}/change/")
    day = page.locator("#policy-0 div.policy-backtest tr[data-days='1']")
    expect(day.locator("td.saved")).to_contain_text("2 restarts, 2 escalations")
    page.fill("#id_policy-0-max_restarts", "10")
    expect(day.locator("td.edited")).to_contain_text("4 restarts, 0 escalations")
