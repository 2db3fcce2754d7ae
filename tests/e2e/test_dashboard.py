"""The dashboard in Chromium on the real ASGI server and bridge: counts, charts, streams, and live
updates from agent events, restart requests and runtime health reports."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from mistersmith.jetstream import client as console_nats
from supervision.events import CONTROL_SUBJECT
from supervision.models import SupervisionNode, SupervisionRestart

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture
def dashboard(live_page):
    """The dashboard, live, failing the test on any uncaught script error."""
    errors: list[str] = []
    live_page.on("pageerror", lambda error: errors.append(str(error)))
    live_page.goto(f"{live_page.server.url}/admin/live/")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(live_page.locator("#panel-agents")).to_have_attribute("data-ready", "true")
    yield live_page
    assert errors == []
    assert live_page.evaluate("window.__xss") is None


def count_cell(page, panel: str, key: str):
    return page.locator(f"#{panel} tr[data-key='{key}'] [data-count]")


def publish(subject: str, payload: dict) -> int:
    return console_nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


@pytest.fixture
def seeded(transactional_db):
    Agent.objects.bulk_create(
        [Agent(name="r1", status="Running"), Agent(name="r2", status="Running"), Agent(name="i1", status="Idle")]
    )
    SupervisionNode.objects.create(node_id="dash-db", node_type="Service", node_type_detail="db", status="failed")


def test_the_page_loads_with_counts_charts_and_streams(seeded, dashboard):
    page = dashboard
    expect(count_cell(page, "panel-agents", "Running")).to_have_text("2")
    expect(count_cell(page, "panel-agents", "Idle")).to_have_text("1")
    expect(count_cell(page, "panel-agents", "Terminated")).to_have_text("0")
    expect(page.locator("#panel-agents [data-total]")).to_have_text("3")
    expect(page.locator("#panel-agents tbody tr")).to_have_count(9)
    expect(count_cell(page, "panel-nodes", "failed")).to_have_text("1")
    expect(count_cell(page, "panel-nodes", "active")).to_have_text("0")
    for series in ("failures", "restarts"):
        chart = page.locator(f"#rate-{series} [data-chart][role='img']")
        expect(chart.locator(".uplot canvas")).to_have_count(1)  # uPlot's bars (vendor/uplot)
        expect(chart).to_have_attribute("aria-label", re.compile(r"per minute over the last 60 minutes: 0 in total"))
        expect(page.locator(f"#rate-{series}")).to_have_attribute("data-now", "0")
        expect(page.locator(f"#rate-{series} [data-total]")).to_have_text("0 in the last hour")
    streams = page.locator("#panel-streams tbody tr")
    expect(streams).to_have_count(4)
    assert streams.locator("th").all_inner_texts() == [
        "AGENT_EVENTS",
        "SYSTEM_EVENTS",
        "SUPERVISION_EVENTS",
        "DISCOVERIES",
    ]
    prefix = page.server.consumer_prefix
    expect(page.locator(f"#panel-streams [data-consumer='{prefix}-agents']")).to_have_text(
        re.compile(rf"^{prefix}-agents: \d+ / \d+$")
    )
    expect(page.locator("#pool-console [data-field='bounds']")).to_have_text("5 / 30")


def test_a_state_change_moves_the_counts_live(seeded, dashboard):
    page = dashboard
    agent = Agent.objects.create(name="mover", status="Running")
    page.reload()
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(count_cell(page, "panel-agents", "Running")).to_have_text("3")
    expect(count_cell(page, "panel-agents", "Paused")).to_have_text("0")
    publish(
        f"agent.{agent.pk}.events",
        {"StateChanged": {"agent_id": str(agent.pk), "old_state": "Running", "new_state": "Paused"}},
    )
    expect(count_cell(page, "panel-agents", "Running")).to_have_text("2")
    expect(count_cell(page, "panel-agents", "Paused")).to_have_text("1")
    expect(page.locator("#panel-agents [data-total]")).to_have_text("4")
    assert page.evaluate("window.misterSmithLive.snapshots") == 1  # moved by the live path, not a reload
    # The event log's copy of it is at the top of the latest events.
    newest = page.locator("#panel-events li").first
    expect(newest.locator(".event-subject")).to_have_text(f"agent.{agent.pk}.events")


def test_a_health_report_updates_the_runtime_pool_live(dashboard):
    page = dashboard
    # No polling in this test: only the "system" topic can bring the report.
    page.route(lambda url: "parts=" in url and "pool" in url, lambda route: route.abort())
    publish("system.health", {"pool_active": 11, "pool_capacity": 30, "pool_available": 19, "healthy": True})
    runtime = page.locator("#pool-runtime")
    expect(runtime.locator("[data-field='pool_active']")).to_have_text("11")
    expect(runtime.locator("[data-field='pool_capacity']")).to_have_text("30")
    expect(runtime.locator("[data-field='pool_available']")).to_have_text("19")
    expect(runtime.locator("[data-field='healthy']")).to_have_text("yes")
    publish("system.health", {"pool_active": XSS, "pool_capacity": 30, "pool_available": 0, "healthy": False})
    expect(runtime.locator("[data-field='pool_active']")).to_have_text(XSS)  # as text, never as HTML
    expect(runtime.locator("[data-field='healthy']")).to_have_attribute("data-healthy", "false")


def test_a_restart_request_shows_in_the_current_minute(dashboard):
    page = dashboard
    node = SupervisionNode.objects.create(node_id="dash-restart", node_type="Service", node_type_detail="db")
    SupervisionRestart.objects.create(node=node, restart_attempt_number=1, restart_delay_ms=100)
    restart_id = str(uuid.uuid4())
    command = {
        "RestartNode": {
            "restart_id": restart_id,
            "node_id": str(node.pk),
            "node_name": node.node_id,
            "attempt": 1,
            "delay_ms": 100,
            "requested_by": "admin",
            "reason": "test",
        }
    }
    publish(CONTROL_SUBJECT, {"message_id": restart_id, "timestamp": "2026-01-01T00:00:00Z", "payload": command})
    expect(page.locator("#rate-restarts [data-total]")).to_have_text("1 in the last hour")
    expect(page.locator("#rate-restarts")).to_have_attribute("data-now", "1")  # the current minute's bar
    assert page.evaluate("window.misterSmithDashboard.rateCharts.restarts.data[1].at(-1)") == 1


def test_latest_events_arrive_live_newest_first_and_escaped(dashboard):
    page = dashboard
    agent_id = uuid.uuid4()
    for n in range(24):
        publish(f"agent.{agent_id}.events", {"Output": {"agent_id": str(agent_id), "content": f"line {n}"}})
    publish(f"agent.{agent_id}.events", {"Output": {"agent_id": str(agent_id), "content": XSS}})
    items = page.locator("#panel-events li")
    expect(items.first.locator(".event-text")).to_contain_text(XSS)  # as text, never as HTML
    expect(items).to_have_count(20)
    expect(items.nth(1).locator(".event-text")).to_contain_text("line 23")
    expect(items.first.locator(".event-subject")).to_have_text(f"agent.{agent_id}.events")


def test_the_freshness_badge_shows_how_far_the_page_is_behind(dashboard):
    badge = dashboard.locator("#freshness-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_attribute("data-state", re.compile("^(fresh|behind|stale)$"))
    expect(badge).to_have_text(re.compile(r"^(up to date|[\d,]+ messages?, \d+ s behind|stale: \d+ s behind)$"))
    assert "agents (AGENT_EVENTS)" in badge.get_attribute("title")
