"""The tree at a past moment in a real browser: the time control, a node's past status, the
``<time>`` of the moment shown, "5 minutes before this failure" from the node's panel, and the
diff of the two moments."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy
from supervision.views import moments
from tests.e2e.conftest import docs_screenshot
from tests.e2e.test_tree import TREE_PATH, item, node, open_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def backdate(delta: timedelta) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE supervision_node_history SET valid_from = valid_from - %(d)s, valid_to = valid_to - %(d)s",
            {"d": delta},
        )


@pytest.fixture
def history():
    """Two hours ago root > (svc active with a policy, db active); half an hour ago svc failed;
    a failure of svc 29 minutes ago (committed statement by statement: each its own moment)."""
    root = node("pt-root", node_type="RootSupervisor", status="active")
    svc = node("pt-svc", root, status="active")
    node("pt-db", root, status="active")
    SupervisionPolicy.objects.create(
        node=svc,
        supervision_strategy="OneForOne",
        max_restarts=5,
        time_window_seconds=60,
        backoff_strategy="Fixed",
        min_restart_delay_ms=100,
        max_restart_delay_ms=1000,
    )
    backdate(timedelta(minutes=90))
    SupervisionNode.objects.filter(pk=svc.pk).update(status="failed")
    backdate(timedelta(minutes=30))
    failure = SupervisionFailure.objects.create(
        node=svc,
        failure_reason="Crash",
        failure_detail="exit 137",
        occurred_at=timezone.now() - timedelta(minutes=29),
    )
    return {"root": root, "svc": svc, "failure": failure}


def test_the_tree_at_a_past_moment_and_five_minutes_before_a_failure(logged_in_page, live_server, history):
    page = logged_in_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    svc = history["svc"]

    # The live tree: svc has failed.
    open_tree(page, live_server)
    assert "failed" in item(page, svc).locator(":scope > .tree-row .tree-status-badge").inner_text()

    # The time control: an hour ago, svc was active.
    hour_ago = (timezone.now() - timedelta(hours=1)).astimezone(UTC).replace(microsecond=0)
    page.fill("#tree-moment-input", hour_ago.strftime(moments.INPUT_FORMAT))
    page.click(".tree-moment input[type=submit]")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    assert "at=" in page.url
    moment = page.locator("time#tree-moment")
    assert moment.get_attribute("datetime") == moments.iso(hour_ago)
    assert "Viewing the past" in page.locator(".tree-past-banner").inner_text()
    assert page.locator("#live-badge").count() == 0  # no live updates in the past
    assert "active" in item(page, svc).locator(":scope > .tree-row .tree-status-badge").inner_text()

    # Its panel at that moment.
    item(page, svc).locator(":scope > .tree-row .tree-type").click()
    page.wait_for_selector(f".tree-panel-node[data-node-id='{svc.pk}']")
    assert "Child states are not kept" in page.locator("#tree-panel").inner_text()

    # Back to now, then from the node's failure: 5 minutes before it.
    page.click("a.tree-back-to-now")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    item(page, svc).locator(":scope > .tree-row .tree-type").click()
    page.wait_for_selector(f".tree-panel-node[data-node-id='{svc.pk}']")
    page.click("#tree-panel a.tree-before-failure")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    failure_at = history["failure"].occurred_at
    shown = page.locator("time#tree-moment").get_attribute("datetime")
    # to the millisecond: the browser's Date has no finer time
    assert abs(timezone.datetime.fromisoformat(shown) - (failure_at - timedelta(minutes=5))) < timedelta(milliseconds=1)
    assert "active" in item(page, svc).locator(":scope > .tree-row .tree-status-badge").inner_text()
    assert item(page, svc).get_attribute("aria-selected") == "true"

    # The diff of the two moments: svc's status changed in between, and the failure is listed.
    diff = page.locator("section.tree-diff")
    assert "pt-svc" in diff.locator(".tree-diff-nodes").inner_text()
    assert "active → failed" in diff.inner_text()
    assert "exit 137" in diff.locator(".tree-diff-failures").inner_text()
    docs_screenshot(page, "past-tree")
    assert errors == []


def test_a_bad_moment_in_the_address_is_explained(logged_in_page, live_server):
    page = logged_in_page
    response = page.goto(f"{live_server.url}{TREE_PATH}?at=not-a-time")
    assert response.status == 400
    assert "is not a moment" in page.locator(".tree-moment-error").inner_text()
