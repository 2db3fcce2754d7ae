"""The state verification page in a real browser on the real ASGI server (with its bridge), and
the live-socket check against that running server."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from agents.models import Agent, InteractiveSession
from mistersmith.operations.verify import report as verify
from mistersmith.operations.verify.matrix import COMPONENTS, OK

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def row(page, check: str):
    return page.locator("#verify-rows tr", has=page.get_by_role("cell", name=check, exact=True))


def test_the_page_renders_the_matrix_and_refreshes_it_in_place(live_page):
    page = live_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{page.server.url}/admin/state/verify/?refresh=2")
    expect(page.locator("h1")).to_have_text("State verification")
    components = page.locator("#verify-rows tr td:first-child").all_text_contents()
    assert set(components) == set(COMPONENTS)
    # The server's own bridge made its consumers: the JetStream rows of this console are ok.
    consumers = page.locator("#verify-rows tr", has_text=re.compile(f"consumer {page.server.consumer_prefix}-"))
    expect(consumers).to_have_count(4)
    for index in range(4):
        expect(consumers.nth(index)).to_have_attribute("data-status", OK)
    sessions = row(page, "live sessions have a process")
    expect(sessions).to_have_attribute("data-status", OK)
    checked = page.locator("#verify-checked-at").get_attribute("datetime")
    page.evaluate("window.__not_reloaded = true")

    InteractiveSession.objects.create(agent=Agent.objects.create(name="gone"), state="Ready", pid=dead_pid())

    expect(sessions).to_have_attribute("data-status", "degraded", timeout=15_000)
    expect(sessions.locator("td.hint")).to_contain_text("end them in the admin")
    expect(sessions.locator("td.status img")).to_have_attribute("src", re.compile("icon-alert"))
    assert page.locator("#verify-checked-at").get_attribute("datetime") != checked
    assert page.evaluate("window.__not_reloaded") is True  # redrawn in place, not a page reload
    expect(page.locator("#verify-status")).not_to_have_text("ok")
    assert errors == []


def test_the_live_socket_check_opens_a_real_socket_to_the_running_console(asgi_server):
    report = verify.run(base_url=asgi_server.url)
    (live,) = [r for r in report.rows if r.check.startswith("live socket at ")]
    assert live.status == OK and live.found.startswith("HTTP 403"), live
