"""A staff user restarts a node in Chromium: node page, confirmation with delay, outcome."""

from __future__ import annotations

import pytest

from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_restart_from_the_node_page(logged_in_page, live_server):
    node = SupervisionNode.objects.create(node_id="e2e-restart-me", node_type="Service", node_type_detail="db")
    SupervisionPolicy.objects.create(node=node, backoff_strategy="Fixed", min_restart_delay_ms=321)
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionnode/{node.pk}/change/")
    page.click("a.restart-link")
    page.wait_for_selector("table.restart-targets")
    assert "321 ms" in page.locator("table.restart-targets").inner_text()
    page.fill("#id_reason", "browser test")
    page.click("input[type=submit].default")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Restart requested for e2e-restart-me" in page.locator("ul.messagelist").inner_text()
    restart = SupervisionRestart.objects.get(node=node)
    assert (restart.reason, restart.restart_delay_ms) == ("browser test", 321)
