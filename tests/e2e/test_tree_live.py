"""The supervision tree is live: events redraw the nodes they name; a lost connection shows on
the badge, and after the reconnect the page reloads its snapshot."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from mistersmith.jetstream.client import connection
from mistersmith.jetstream.messages import envelope
from supervision.models import SupervisionNode, SupervisionPolicy
from tests.e2e.test_tree import node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def publish(subject: str, payload: dict) -> None:
    message_id = uuid.uuid4().hex
    connection().publish(subject, envelope(payload, message_id=message_id), msg_id=message_id)


def open_live_tree(page) -> None:
    page.goto(f"{page.server.url}/admin/supervision/tree/")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")


def row(page, obj: SupervisionNode):
    return page.locator(f"li[role='treeitem'][data-node-id='{obj.pk}'] > div").first


def test_runtime_events_update_status_and_policy_in_place(live_page):
    root = node("lt-root", node_type="RootSupervisor")
    worker = node("lt-worker", root, node_type="Worker")
    worker_row = lambda: row(live_page, worker)  # noqa: E731
    open_live_tree(live_page)
    live_page.locator(f"li[data-node-id='{root.pk}'] > div").first.click()
    live_page.keyboard.press("ArrowRight")
    expect(worker_row()).to_contain_text("lt-worker")
    expect(worker_row()).not_to_contain_text("failed")
    expect(worker_row()).to_contain_text("no policy")

    # The runtime writes the node's row itself, then announces the agent's move.
    SupervisionNode.objects.filter(pk=worker.pk).update(status="failed")
    publish(
        f"supervision.agent.{worker.agent_id}.lifecycle.error",
        {"agent_id": str(worker.agent_id), "event_type": "Error", "new_state": "Error", "metadata": {}},
    )
    expect(worker_row()).to_contain_text("failed")

    # The console's own event: a policy saved elsewhere shows here.
    SupervisionPolicy.objects.create(node=worker, max_restarts=7, time_window_seconds=90)
    publish(f"supervision.node.{worker.pk}.policy.saved", {"PolicySaved": {"node_id": str(worker.pk)}})
    expect(worker_row()).to_contain_text("max 7 restarts / 90 s")


def test_the_badge_follows_the_connection_and_the_snapshot_reloads(live_page):
    root = node("lt2-root", node_type="RootSupervisor")
    open_live_tree(live_page)
    assert live_page.evaluate("window.misterSmithLive.snapshots") == 1

    live_page.server.stop()
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "reconnecting")
    # A change while the page is cut off, with no event for it: only a snapshot can show it.
    SupervisionNode.objects.filter(pk=root.pk).update(status="failed")
    live_page.server.start()
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(row(live_page, root)).to_contain_text("failed")
    assert live_page.evaluate("window.misterSmithLive.snapshots") == 2


def test_a_failure_moves_the_budget_badge_live(live_page):
    from supervision.models import SupervisionFailure

    root = node("lt3-root", node_type="RootSupervisor")
    worker = node("lt3-worker", root, node_type="Worker")
    SupervisionPolicy.objects.create(node=worker, max_restarts=3, time_window_seconds=600)
    open_live_tree(live_page)
    badge = live_page.locator(f"li[role='treeitem'][data-node-id='{worker.pk}'] > div .tree-budget")
    expect(badge).to_have_text("0/3")
    # The runtime records the failure, then announces the agent's error: the row comes back with its budget.
    for _ in range(2):
        SupervisionFailure.objects.create(node=worker, failure_reason="Crash", failure_detail="x")
    publish(
        f"supervision.agent.{worker.agent_id}.lifecycle.error",
        {"agent_id": str(worker.agent_id), "event_type": "Error", "new_state": "Error", "metadata": {}},
    )
    expect(badge).to_have_text("2/3")
    expect(badge).to_have_class("tree-budget tree-budget-last_slot")
