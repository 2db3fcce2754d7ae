"""The admin in a real browser: login, a large-table changelist, the policy delay preview."""

from __future__ import annotations

import pytest

from mistersmith.simulator import demo
from supervision.models import SupervisionPolicy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_then_failures_changelist_filters_by_reason(logged_in_page, live_server):
    demo.seed(prefix="e2e", nodes=30, failures=300, hive=False)
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionfailure/")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 50
    page.click("#changelist-filter >> text=HeartbeatTimeout")
    page.wait_for_url("**failure_reason__exact=HeartbeatTimeout**")
    reasons = page.locator("#result_list td.field-failure_reason").all_inner_texts()
    assert reasons and set(reasons) == {"HeartbeatTimeout"}


def test_policy_page_shows_the_delays_it_produces(logged_in_page, live_server):
    demo.seed(prefix="e2p", nodes=10, failures=0, hive=False)
    policy = (
        SupervisionPolicy.objects.filter(backoff_strategy="Exponential").first() or SupervisionPolicy.objects.first()
    )
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionpolicy/{policy.pk}/change/")
    cells = page.locator("table.restart-delays td").all_inner_texts()
    assert cells[1] == f"{policy.restart_delays()[0]} ms"
    assert len(cells) == 16


def test_policy_delays_follow_the_form_while_it_is_edited(logged_in_page, live_server):
    demo.seed(prefix="e2l", nodes=5, failures=0, hive=False)
    policy = SupervisionPolicy.objects.first()
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionpolicy/{policy.pk}/change/")
    page.select_option("#id_backoff_strategy", "Linear")
    page.fill("#id_min_restart_delay_ms", "10")
    page.fill("#id_max_restart_delay_ms", "100000")
    page.wait_for_function("document.querySelector('table.restart-delays td:nth-child(2)').textContent === '1010 ms'")
    assert page.locator("table.restart-delays td").all_inner_texts()[:4] == ["1", "1010 ms", "2", "2010 ms"]
