"""The discoveries page in Chromium: the filtered snapshot, then matching discoveries arriving
live (and only those), shown as text."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from mistersmith.jetstream.client import connection
from tests.agents.test_discoveries import payload

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def publish(discovery: dict) -> None:
    connection().publish(f"discoveries.{discovery['agent_id']}.patterns", discovery, msg_id=uuid.uuid4().hex)


def test_matching_discoveries_arrive_live_and_others_do_not(live_page):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    live_page.goto(f"{live_page.server.url}/admin/discoveries/")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")

    live_page.check("input[name=types][value=Pattern]")
    live_page.fill("#id_min_confidence", "0.5")
    live_page.click("#discovery-filter input[type=submit]")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    live_page.wait_for_function("window.misterSmithLive.snapshots >= 2")
    assert "types=Pattern" in live_page.url

    publish(payload(1, kind="Insight", agent=agent, confidence=0.9, content="wrong type"))
    publish(payload(2, kind="Pattern", agent=agent, confidence=0.1, content="too unsure"))
    xss = '<img src=x onerror="window.__xss=1">'
    publish(payload(3, kind="Pattern", agent=agent, confidence=0.8, content=xss))

    rows = live_page.locator("#discovery-table tbody tr")
    expect(rows.filter(has_text=agent)).to_have_count(1)
    expect(rows.filter(has_text=agent).locator(".discovery-content")).to_have_text(f"{xss} 3")
    assert live_page.evaluate("window.__xss") is None

    # A reload keeps the filter (it is in the URL) and the snapshot holds the same one discovery.
    live_page.reload()
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(live_page.locator("#discovery-table tbody tr").filter(has_text=agent)).to_have_count(1)


HIDE = """hidden => {
  Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_background_tab_queues_frames_and_applies_them_at_once_when_shown(live_page):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    live_page.goto(f"{live_page.server.url}/admin/discoveries/?keywords={agent}")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    live_page.evaluate(HIDE, True)
    for n in range(5):
        publish(payload(n, agent=agent, content=f"hidden {agent}"))
    live_page.wait_for_function("window.misterSmithLive.hidden.reduce((n, f) => n + f.events.length, 0) === 5")
    expect(live_page.locator("#discovery-table tbody tr")).to_have_count(0)  # nothing drawn while hidden

    live_page.evaluate(HIDE, False)
    expect(live_page.locator("#discovery-table tbody tr")).to_have_count(5)
    assert live_page.evaluate("window.misterSmithLive.hidden.length") == 0
