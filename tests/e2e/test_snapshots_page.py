"""The snapshot page in a real browser: reached from the admin home, a snapshot created, listed,
and the restore confirmation shown (then declined)."""

from __future__ import annotations

import pytest

from mistersmith.simulator import demo

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_create_a_snapshot_and_see_it_listed(logged_in_page, live_server, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.HIVE_DB_PATH = tmp_path / "absent-hive.db"  # no Hive Mind files: the real ones stay out of it
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "absent-memory.db"
    demo.seed(prefix="e2s", nodes=10, failures=20, sessions=1, hive=False)
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/")
    page.click("#snapshot-pages a")
    page.wait_for_selector("#snapshot-list")
    assert "No snapshots yet" in page.inner_text("#snapshot-list")

    page.click("#snapshot-create input[type=submit]")
    page.wait_for_selector("#snapshot-list tr.snapshot")
    assert "written" in page.inner_text("ul.messagelist li.success")
    row = page.locator("#snapshot-list tr.snapshot")
    assert row.count() == 1
    assert "supervision" in row.inner_text() and "0.1.0" in row.inner_text()

    row.locator("a.restore").click()
    page.wait_for_selector("#restore-plan")
    assert "it will be REPLACED" in page.inner_text("#restore-plan")
    page.click("text=No, take me back")
    page.wait_for_selector("#snapshot-list tr.snapshot")
