"""Issue 12, item 13 in Chromium: the state verification page and the snapshot pages (list and
restore confirmation) load without one CSP violation, and no resource of theirs (the favicon
included) answers 404."""

from __future__ import annotations

import pytest

from mistersmith.simulator import demo
from tests.e2e.test_csp import visit, watched_page  # noqa: F401 (the CSP-watching page fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_state_pages_run_without_a_csp_violation_or_a_missing_resource(watched_page, settings, tmp_path):  # noqa: F811
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.HIVE_DB_PATH = tmp_path / "absent-hive.db"  # no Hive Mind files: the real ones stay out of it
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "absent-memory.db"
    demo.seed(prefix="cspst", nodes=5, failures=5, sessions=1, hive=False)
    page = watched_page
    failed: list[str] = []
    page.on(
        "response",
        lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )

    found = {"/admin/state/verify/": visit(page, "/admin/state/verify/", ready="#verify-rows tr")}
    found["/admin/state/snapshots/"] = visit(page, "/admin/state/snapshots/", ready="#snapshot-list")
    page.click("#snapshot-create input[type=submit]")
    page.wait_for_selector("#snapshot-list tr.snapshot a.restore")
    restore = page.locator("#snapshot-list tr.snapshot a.restore").get_attribute("href")
    found[restore] = visit(page, restore, ready="#restore-plan")
    assert {path: problems for path, problems in found.items() if problems} == {}
    assert failed == []

    favicon = page.request.get(f"{page.server.url}/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"] == "image/x-icon"


def test_the_verification_styles_apply(watched_page):  # noqa: F811
    """The moved stylesheet really reaches the page: its cells align to the top."""
    page = watched_page
    assert visit(page, "/admin/state/verify/", ready="#verify-rows tr") == []
    align = page.evaluate("getComputedStyle(document.querySelector('.verify-state td')).verticalAlign")
    assert align == "top"
