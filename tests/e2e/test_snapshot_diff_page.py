"""The snapshot diff in a real browser: from the snapshot page, a snapshot compared with now shows
the node whose status changed since, the policy field edited, the node added and the one removed;
then two snapshots compared through the form."""

from __future__ import annotations

import pytest
from django.db import connection

from mistersmith.simulator import demo
from supervision.models import SupervisionNode, SupervisionPolicy
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_compare_a_snapshot_with_now(logged_in_page, live_server, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.HIVE_DB_PATH = tmp_path / "absent-hive.db"
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "absent-memory.db"
    demo.seed(prefix="e2d", nodes=30, failures=40, sessions=0, hive=False)
    root = SupervisionNode.objects.get(node_id="e2d-root")
    gone = SupervisionNode.objects.create(
        node_id="e2d-retired", node_type="Service", node_type_detail="nats", parent=root
    )
    watched = SupervisionNode.objects.create(
        node_id="e2d-gateway", node_type="Service", node_type_detail="http-gateway", status="active", parent=root
    )
    SupervisionPolicy.objects.create(node=watched)
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/state/snapshots/")
    page.click("#snapshot-create input[type=submit]")  # the snapshot is written by the server, as an operator would
    page.wait_for_selector("#snapshot-list tr.snapshot")
    first = page.get_attribute("#snapshot-list tr.snapshot", "data-name")

    SupervisionNode.objects.filter(pk=watched.pk).update(status="failed")
    SupervisionPolicy.objects.filter(node=watched).update(max_restarts=2, backoff_strategy="Linear")
    SupervisionNode.objects.create(
        node_id="e2d-newcomer", node_type="Service", node_type_detail="mcp-server", parent=root
    )
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM supervision_nodes WHERE id = %s", [gone.id])

    row = page.locator(f'#snapshot-list tr.snapshot[data-name="{first}"]')
    row.locator("a.compare").click()
    page.wait_for_selector("#snapshot-diff")
    changed = page.locator(f'#diff-changed tr.changed-node[data-node="{watched.id}"]')
    assert "e2d-gateway" in changed.inner_text()
    assert "active → failed" in changed.inner_text()
    assert (
        "max_restarts: 5 → 2" in changed.inner_text()
        and "backoff_strategy: Exponential → Linear" in changed.inner_text()
    )
    assert "e2d-newcomer" in page.inner_text("#diff-added")
    assert "e2d-retired" in page.inner_text("#diff-removed")
    assert "1 added, 1 removed, 1 changed" in page.inner_text("#diff-summary")
    nodes_count = page.locator('#diff-counts tr[data-table="supervision_nodes"]').inner_text()
    total = str(SupervisionNode.objects.count())
    assert nodes_count.split("\t")[1:] == [total, total, "0"]  # one added, one removed
    docs_screenshot(page.locator("#content-main"), "snapshot-diff")

    page.goto(f"{live_server.url}/admin/state/snapshots/")
    page.click("#snapshot-create input[type=submit]")
    page.wait_for_function("document.querySelectorAll('#snapshot-list tr.snapshot').length === 2")
    [second] = [
        name
        for name in page.eval_on_selector_all("#snapshot-list tr.snapshot", "rows => rows.map(r => r.dataset.name)")
        if name != first
    ]
    page.click("#snapshot-compare-link a")
    page.wait_for_selector("#snapshot-compare-form")
    page.select_option("#id_before", first)
    page.select_option("#id_after", second)
    page.click("#snapshot-compare-form input[type=submit]")
    page.wait_for_function(f"document.querySelector('#snapshot-diff h2').textContent.includes('{second}')")
    assert "1 added, 1 removed, 1 changed" in page.inner_text("#diff-summary")
