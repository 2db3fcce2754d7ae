"""The live agents pages in Chromium, on the real ASGI server with the bridge: rows move when the
runtime's events arrive, output shows live and as text, and commands answer on the page."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from django.db import connections
from playwright.sync_api import expect

from agents.models import Agent, AgentCommandRecord
from mistersmith.jetstream.client import connection

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = '<img src=x onerror="window.__xss=1">'


def publish(agent_id: uuid.UUID, variant: str, **fields) -> None:
    body = {variant: {"agent_id": str(agent_id), **fields}}
    connection().publish(f"agent.{agent_id}.events", body, msg_id=uuid.uuid4().hex)


@pytest.fixture
def script_errors(live_page):
    """Every test here fails on an uncaught error in the page's scripts."""
    errors: list[str] = []
    live_page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors
    assert errors == []

    with contextlib.suppress(Exception):
        connections.close_all()


def open_list(page, query: str = "") -> None:
    page.goto(f"{page.server.url}/admin/agents/live/{query}")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(page.locator("#agents-table")).to_have_attribute("data-ready", "true")


def open_detail(page, agent: Agent) -> None:
    page.goto(f"{page.server.url}/admin/agents/live/{agent.pk}/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    page.wait_for_function("document.body.dataset.agentReady === 'true'")


def test_the_list_moves_rows_in_place_and_announces_new_agents(live_page, script_errors):
    walker = Agent.objects.create(name="e2e-walker", status="Running")
    Agent.objects.create(name="e2e-still", status="Idle")
    open_list(live_page)
    row = live_page.locator(f"tr[data-agent-id='{walker.pk}']")
    expect(row.locator(".agent-state")).to_have_text("Running")
    expect(row.locator(".agent-heartbeat")).to_have_text("never")
    snapshots = live_page.evaluate("window.misterSmithLive.snapshots")

    publish(walker.pk, "StateChanged", old_state="Running", new_state="Paused")
    expect(row.locator(".agent-state")).to_have_text("Paused")
    expect(row.locator(".agent-state")).to_have_attribute("data-state", "Paused")
    publish(walker.pk, "Heartbeat", timestamp={"secs_since_epoch": 1_900_000_000, "nanos_since_epoch": 0})
    expect(row.locator(".agent-heartbeat")).not_to_have_text("never")

    newcomer = uuid.uuid4()
    publish(newcomer, "Spawned", config={"name": "e2e-newcomer"})
    expect(live_page.locator("#agents-new")).to_be_visible()
    expect(live_page.locator("#agents-new-link")).to_have_text("1 new agent — reload")
    assert live_page.evaluate("window.misterSmithLive.snapshots") == snapshots  # in place, no reload
    walker.refresh_from_db()
    assert walker.status == "Paused"  # the bridge's projection, which the row follows

    live_page.click("#agents-new-link")
    expect(live_page.locator(f"tr[data-agent-id='{newcomer}'] .agent-state")).to_have_text("Running")
    expect(live_page.locator("#agents-new")).to_be_hidden()


def test_a_row_leaving_the_state_filter_is_marked_and_pages_link_on(live_page, script_errors):
    agents = Agent.objects.bulk_create([Agent(name=f"e2e-page-{i:03d}", status="Running") for i in range(105)])
    # by name too: agents the bridge spawned from retained history are Running (Spawned means Running)
    open_list(live_page, "?state=Running&q=e2e-page-")
    expect(live_page.locator("#agents-table tbody tr")).to_have_count(100)
    expect(live_page.locator("#agents-summary")).to_contain_text("100 shown of 105 agents")
    first = agents[0]
    publish(first.pk, "StateChanged", old_state="Running", new_state="Paused")
    expect(live_page.locator(f"tr[data-agent-id='{first.pk}']")).to_have_class("agent-stale")
    live_page.click("#agents-pager a[rel=next]")
    expect(live_page.locator("#agents-table")).to_have_attribute("data-ready", "true")
    # Pages follow names after the last one shown: the one that left was on the first page.
    expect(live_page.locator("#agents-table tbody tr")).to_have_count(5)
    assert "state=Running" in live_page.url and "after=" in live_page.url and "q=e2e-page-" in live_page.url


def test_the_detail_shows_output_live_and_as_text(live_page, script_errors):
    agent = Agent.objects.create(name=XSS, status="Running")
    publish(agent.pk, "Output", content="before the page opened")
    open_detail(live_page, agent)
    expect(live_page.locator("#agent-output")).to_contain_text("before the page opened")  # from the stream
    expect(live_page.locator("h1")).to_contain_text(XSS)

    publish(agent.pk, "Output", content=XSS)
    publish(agent.pk, "StateChanged", old_state="Running", new_state="Processing")
    expect(live_page.locator("#agent-output")).to_contain_text(XSS)
    expect(live_page.locator("#agent-state .agent-state")).to_have_text("Processing")
    history = live_page.locator("#agent-history tbody tr")
    expect(history.first.locator("td").nth(2)).to_have_text("StateChanged")
    expect(history.filter(has_text=XSS)).to_have_count(1)
    assert live_page.locator("#agent-output img, #agent-history img, h1 img").count() == 0
    assert live_page.evaluate("window.__xss") is None
    # The output seen before the snapshot and the one after it, each once.
    assert live_page.locator("#agent-output").inner_text().count("before the page opened") == 1


def test_commands_from_the_detail_page_answer_on_the_page(live_page, stand_in, script_errors):
    agent = Agent.objects.create(name="e2e-commanded", status="Running")
    open_detail(live_page, agent)
    expect(live_page.locator("button[data-command=Resume]")).to_be_disabled()  # not from Running

    live_page.click("button[data-command=Pause]")
    result = live_page.locator("#agent-command-result")
    expect(result).to_have_attribute("data-outcome", "ok")
    expect(result).to_contain_text("Pause: done")
    expect(result.locator(".agent-result-data")).to_contain_text('"state": "paused"')
    expect(live_page.locator("#agent-state .agent-state")).to_have_text("Paused")  # the event, via the bridge
    expect(live_page.locator("button[data-command=Pause]")).to_be_disabled()

    live_page.click("button[data-command=HealthCheck]")
    expect(result).to_contain_text("HealthCheck: done")
    expect(result.locator(".agent-result-data")).to_contain_text('"healthy": true')

    live_page.click("button[data-command=Stop]")
    expect(live_page.locator("#agent-stop-confirm")).to_be_visible()
    live_page.click("#agent-stop-no")  # asked, and nothing happens without a yes
    expect(live_page.locator("#agent-stop-confirm")).to_be_hidden()
    assert not AgentCommandRecord.objects.filter(agent_id=agent.pk, command="Stop").exists()
    live_page.click("button[data-command=Stop]")
    live_page.fill("#agent-stop-timeout", "4")
    live_page.click("#agent-stop-yes")
    expect(result).to_contain_text("Stop: done")
    expect(live_page.locator("#agent-state .agent-state")).to_have_text("Terminated")
    stop = AgentCommandRecord.objects.get(agent_id=agent.pk, command="Stop")
    assert stop.arguments["timeout"] == {"secs": 4, "nanos": 0} and stop.requested_by_name == "admin"
    expect(live_page.locator("#agent-command-log tbody tr")).to_have_count(3)


def test_a_command_nobody_answers_shows_why(live_page, script_errors):
    agent = Agent.objects.create(name="e2e-alone", status="Running")
    open_detail(live_page, agent)
    live_page.click("button[data-command=Status]")
    result = live_page.locator("#agent-command-result")
    expect(result).to_have_attribute("data-outcome", "unavailable")
    expect(result).to_contain_text("Status: Unavailable — No runtime is listening on agent.command")
