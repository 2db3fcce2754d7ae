"""Policy editing that teaches (issue 14, item 8), in Chromium: help on the fields, the backoff factor
shown only with Exponential backoff, the error types as checkboxes, the history telling old → new,
and the policy's label naming its node; on the policy page and on the node page's inline."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from supervision.models import SupervisionNode, SupervisionPolicy
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def policy():
    node = SupervisionNode.objects.create(node_id="billing-sup", node_type="RootSupervisor")
    return SupervisionPolicy.objects.create(node=node)


def test_the_policy_form_teaches_and_its_history_tells_old_and_new(logged_in_page, live_server, policy):
    page = logged_in_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/admin/supervision/supervisionpolicy/{policy.pk}/change/")
    expect(page.locator("h2, h1").filter(has_text="Policy of billing-sup")).not_to_have_count(0)
    expect(page.locator("#id_max_restarts_helptext")).to_contain_text("failures inside the time window")

    factor_row = page.locator(".form-row.field-backoff_factor")
    expect(factor_row).to_be_visible()  # Exponential: the factor acts
    expect(factor_row).to_contain_text("Used only by Exponential backoff")
    page.fill("#id_backoff_factor", "3.50")
    page.select_option("#id_backoff_strategy", "Linear")
    expect(factor_row).to_be_hidden()
    assert page.input_value("#id_backoff_factor") == "2.00"  # an unused factor is not changed
    page.select_option("#id_backoff_strategy", "Exponential")
    expect(factor_row).to_be_visible()
    page.select_option("#id_backoff_strategy", "Fixed")

    boxes = page.locator("input[name=escalate_on_error_types]")
    expect(boxes).to_have_count(5)
    page.check("input[name=escalate_on_error_types][value=Crash]")
    page.check("input[name=escalate_on_error_types][value=ResourceExhaustion]")
    page.fill("#id_max_restarts", "6")
    docs_screenshot(page.locator("#content-main"), "policy-form")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    policy.refresh_from_db()
    assert policy.escalate_on_error_types == ["Crash", "ResourceExhaustion"]
    assert (policy.backoff_strategy, policy.max_restarts, str(policy.backoff_factor)) == ("Fixed", 6, "2.00")
    expect(page.locator(".form-row.field-backoff_factor")).to_be_hidden()  # loaded as Fixed: hidden at once
    expect(page.locator("input[name=escalate_on_error_types][value=Crash]")).to_be_checked()

    page.goto(f"{live_server.url}/admin/supervision/supervisionpolicy/{policy.pk}/history/")
    history = page.locator("#change-history")
    expect(history).to_contain_text("Max restarts: 5 → 6")
    expect(history).to_contain_text("Backoff strategy: Exponential → Fixed")
    expect(history).to_contain_text("Escalate on error types: (none) → Crash, ResourceExhaustion")
    docs_screenshot(history, "policy-history")
    assert errors == []


def test_the_node_pages_policy_inline_hides_the_factor_too(logged_in_page, live_server, policy):
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionnode/{policy.node_id}/change/")
    factor_row = page.locator("#policy-0 .form-row.field-backoff_factor")
    expect(factor_row).to_be_visible()
    page.select_option("#id_policy-0-backoff_strategy", "Linear")
    expect(factor_row).to_be_hidden()
    page.select_option("#id_policy-0-backoff_strategy", "Exponential")
    expect(factor_row).to_be_visible()
    expect(page.locator("#policy-0 input[name='policy-0-escalate_on_error_types']")).to_have_count(5)
