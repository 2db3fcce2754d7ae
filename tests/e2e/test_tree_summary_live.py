"""A node's child summary follows its children live: when a child's status moves, the parent's
"children (status count)" is redrawn with it, so the figures add up to the children shown."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from supervision.models import SupervisionNode
from tests.e2e.test_tree import node
from tests.e2e.test_tree_live import open_live_tree, publish, row

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_parents_summary_follows_a_childs_status(live_page):
    root = node("ls-root", node_type="RootSupervisor")
    worker = node("ls-worker", root, node_type="Worker", status="active")
    open_live_tree(live_page)
    live_page.locator(f"li[data-node-id='{root.pk}'] > div").first.click()
    live_page.keyboard.press("ArrowRight")
    expect(row(live_page, worker)).to_contain_text("ls-worker")
    expect(row(live_page, root)).to_contain_text("1 child (active 1)")

    SupervisionNode.objects.filter(pk=worker.pk).update(status="failed")
    publish(
        f"supervision.agent.{worker.agent_id}.lifecycle.error",
        {"agent_id": str(worker.agent_id), "event_type": "Error", "new_state": "Error", "metadata": {}},
    )

    expect(row(live_page, worker)).to_contain_text("failed")
    expect(row(live_page, root)).to_contain_text("1 child (failed 1)")
