"""Payloads a person can read (issue 14, item 6), in Chromium on the real ASGI server and bridge:
event log and agent history rows open their message as pretty JSON (text, never HTML) with copy;
heartbeats hide on request, the choice kept in the URL; the live output shows each chunk's time,
is searchable (the search kept in the URL) and downloads as a text file."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from mistersmith.jetstream import client as nats
from tests.e2e import test_agents_live as agents_live_tests
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = '<img src=x onerror="window.__xss=1">'
BEAT = {"secs_since_epoch": 1_900_000_000, "nanos_since_epoch": 0}


def publish(subject: str, payload: dict) -> int:
    return nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


# Every test here fails on an uncaught error in the page's scripts (the agents pages' fixture).
script_errors = agents_live_tests.script_errors


def test_an_event_log_row_opens_pretty_json_that_copies(live_page, script_errors):
    page = live_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.server.url)
    page.goto(f"{page.server.url}/admin/events/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    agent = uuid.uuid4()
    body = {"Output": {"agent_id": str(agent), "content": XSS, "nested": {"list": [1, 2]}}}
    sequence = publish(f"agent.{agent}.events", body)
    row = page.locator(f"#live-rows tr[data-key='AGENT_EVENTS:{sequence}']")
    expect(row).to_be_visible()

    toggle = row.locator(".payload-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    pretty = row.locator(".payload-json")
    expect(pretty).to_have_attribute("data-json", "true")
    text = pretty.text_content()
    assert json.loads(text) == body
    assert '\n  "Output": {\n    "agent_id"' in text  # indented
    assert pretty.locator("*").count() == 0 and page.evaluate("window.__xss") is None

    row.locator(".payload-copy").click()
    expect(row.locator(".payload-note")).to_have_text("Copied.")
    docs_screenshot(row, "event-log-payload")
    assert page.evaluate("navigator.clipboard.readText()") == text
    toggle.click()
    expect(row.locator(".payload-box")).to_be_hidden()


def test_the_event_log_hides_heartbeats_and_keeps_the_choice_in_the_url(live_page, script_errors):
    page = live_page
    page.goto(f"{page.server.url}/admin/events/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    agent = uuid.uuid4()
    beat = publish(f"agent.{agent}.events", {"Heartbeat": {"agent_id": str(agent), "timestamp": BEAT}})
    health = publish(f"supervision.agent.{agent}.health.heartbeat", {"agent_id": str(agent), "health_score": 1})
    # An Output that only quotes the word is no heartbeat.
    said = publish(f"agent.{agent}.events", {"Output": {"agent_id": str(agent), "content": '"Heartbeat": {'}})
    rows = {s: page.locator(f"#live-rows tr[data-key$=':{s}'][data-subject*='{agent}']") for s in (beat, health, said)}
    for row in rows.values():
        expect(row).to_be_visible()

    page.check("#filter-heartbeats")
    expect(rows[beat]).to_be_hidden()
    expect(rows[health]).to_be_hidden()
    expect(rows[said]).to_be_visible()
    assert "heartbeats=hide" in page.url
    later = publish(f"agent.{agent}.events", {"Heartbeat": {"agent_id": str(agent), "timestamp": BEAT}})
    expect(page.locator(f"#live-rows tr[data-key='AGENT_EVENTS:{later}']")).to_be_hidden()  # arrivals too

    page.reload()  # the choice is in the URL
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(page.locator("#filter-heartbeats")).to_be_checked()
    expect(rows[said]).to_be_visible()
    expect(rows[beat]).to_be_hidden()
    page.uncheck("#filter-heartbeats")
    expect(rows[beat]).to_be_visible()
    assert "heartbeats" not in page.url


def open_detail(page, agent: Agent, query: str = "") -> None:
    page.goto(f"{page.server.url}/admin/agents/live/{agent.pk}/{query}")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    page.wait_for_function("document.body.dataset.agentReady === 'true'")


def test_agent_output_is_timestamped_searchable_and_downloadable(live_page, script_errors):
    page = live_page
    agent = Agent.objects.create(name="e2e-output", status="Running")
    subject = f"agent.{agent.pk}.events"
    publish(subject, {"Output": {"agent_id": str(agent.pk), "content": "alpha: stored before the page"}})
    open_detail(page, agent)
    publish(subject, {"Output": {"agent_id": str(agent.pk), "content": f"beta: live {XSS}"}})
    publish(subject, {"Output": {"agent_id": str(agent.pk), "content": "gamma: live too"}})
    chunks = page.locator("#agent-output .output-chunk")
    expect(chunks).to_have_count(3)
    for index in range(3):  # every chunk says when
        chunk = chunks.nth(index)
        expect(chunk.locator("time.output-time")).to_have_text(re.compile(r"^\d{2}:\d{2}:\d{2}$"))
        assert chunk.get_attribute("data-time")
    assert page.locator("#agent-output img").count() == 0 and page.evaluate("window.__xss") is None

    page.fill("#agent-output-filter", "BETA")
    expect(chunks.filter(has_text="beta: live")).to_be_visible()
    expect(chunks.filter(has_text="alpha")).to_be_hidden()
    expect(chunks.filter(has_text="gamma")).to_be_hidden()
    expect(page.locator("#agent-output-count")).to_have_text("1 of 3 chunks match.")
    assert "output=BETA" in page.url
    docs_screenshot(page.locator(".agent-output-section"), "agent-output-search")

    with page.expect_download() as download_info:
        page.click("#agent-output-download")
    download = download_info.value
    assert download.suggested_filename == f"agent-{agent.pk}-output.txt"
    with open(download.path(), encoding="utf-8") as saved:
        lines = saved.read().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"  beta: live {XSS}")
    assert lines[0].split("  ")[0] == chunks.filter(has_text="beta").get_attribute("data-time")

    page.reload()  # the search is in the URL
    page.wait_for_function("document.body.dataset.agentReady === 'true'")
    expect(page.locator("#agent-output-filter")).to_have_value("BETA")
    page.fill("#agent-output-filter", "")
    expect(page.locator("#agent-output-count")).to_have_text("3 chunks.")


def test_agent_history_rows_open_pretty_json_and_heartbeats_hide(live_page, script_errors):
    page = live_page
    agent = Agent.objects.create(name="e2e-history", status="Running")
    subject = f"agent.{agent.pk}.events"
    stored = publish(subject, {"Output": {"agent_id": str(agent.pk), "content": XSS}})
    beat = publish(subject, {"Heartbeat": {"agent_id": str(agent.pk), "timestamp": BEAT}})
    open_detail(page, agent)
    live_beat = publish(subject, {"Heartbeat": {"agent_id": str(agent.pk), "timestamp": BEAT}})
    history = page.locator("#agent-history tbody")
    row = history.locator(f"tr[data-sequence='{stored}']")
    row.locator(".payload-toggle").click()
    pretty = row.locator(".payload-json")
    expect(pretty).to_have_attribute("data-json", "true")
    assert json.loads(pretty.text_content()) == {"Output": {"agent_id": str(agent.pk), "content": XSS}}
    assert pretty.locator("*").count() == 0 and page.evaluate("window.__xss") is None

    beats = [history.locator(f"tr[data-sequence='{s}']") for s in (beat, live_beat)]
    for each in beats:
        expect(each).to_be_visible()
    page.check("#agent-history-hide-heartbeats")
    for each in beats:
        expect(each).to_be_hidden()
    expect(row).to_be_visible()
    assert "heartbeats=hide" in page.url
    open_detail(page, agent, "?heartbeats=hide")
    expect(page.locator("#agent-history-hide-heartbeats")).to_be_checked()
    expect(history.locator(f"tr[data-sequence='{beat}']")).to_be_hidden()
