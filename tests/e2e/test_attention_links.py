"""Issue 14 items 2 and 3 in Chromium on the real ASGI server and bridge: every count on the dashboard
opens the list it counts, showing that count; the "needs attention" panel comes first, updates live and
links to what it counts; silent agents are flagged in the list; an Error agent's page offers its
node's restart; agent ids in the event log and the dashboard's events lead to the agent; verify_state
lists failed and degraded rows first with links to the fix."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent, InteractiveSession
from mistersmith.jetstream import client as console_nats
from supervision.models import SupervisionFailure, SupervisionNode
from tests.e2e.test_agents_live import open_detail, script_errors  # noqa: F401 (a fixture)
from tests.e2e.test_verify_state import dead_pid

# every test fails on an uncaught error in the page's scripts (the fixture of test_agents_live)
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("script_errors")]


def publish(subject: str, payload: dict) -> int:
    return console_nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


def open_dashboard(page) -> None:
    page.goto(f"{page.server.url}/admin/live/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(page.locator("#panel-agents")).to_have_attribute("data-ready", "true")
    expect(page.locator("#panel-attention")).to_have_attribute("data-ready", "true")


def agents_total(page) -> int:
    """The live agents list's total, once it has loaded."""
    expect(page.locator("#agents-table")).to_have_attribute("data-ready", "true")
    text = page.locator("#agents-summary").text_content()
    return int(re.search(r"of (?:about )?([\d,]+) agent", text).group(1).replace(",", ""))


def changelist_rows(page) -> int:
    expect(page.locator("#changelist")).to_be_visible()
    return page.locator("#result_list tbody tr").count()


@pytest.fixture
def seeded(transactional_db):
    states = ["Running", "Running", "Idle", "Error", "Error", "Error", "Paused"]
    now = timezone.now()
    Agent.objects.bulk_create(
        Agent(name=f"count-{n}", status=state, last_heartbeat=now) for n, state in enumerate(states)
    )
    for n, status in enumerate(["failed", "failed", "active"]):
        SupervisionNode.objects.create(
            node_id=f"count-node-{n}", node_type="Service", node_type_detail="x", status=status
        )
    node = SupervisionNode.objects.get(node_id="count-node-2")
    SupervisionFailure.objects.bulk_create(
        SupervisionFailure(
            node=node, failure_reason="Crash", failure_detail="x", occurred_at=now - dt.timedelta(minutes=m)
        )
        for m in (1, 2, 30, 50)
    )


def test_every_count_on_the_dashboard_opens_the_list_it_counts(seeded, live_page):
    page = live_page
    open_dashboard(page)
    checks = []  # (locator of the count, what opens)
    for panel in ("panel-agents", "panel-nodes"):
        for key in page.locator(f"#{panel} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)"):
            checks.append((panel, f"#{panel} tr[data-key='{key}'] [data-count]"))
        checks.append((panel, f"#{panel} [data-total]"))
    checks.append(("rates", "#rate-failures [data-total]"))
    assert len(checks) == 9 + 1 + 4 + 1 + 1
    for panel, selector in checks:
        open_dashboard(page)
        link = page.locator(selector)
        expect(link).to_have_text(re.compile(r"^\d"))  # loaded
        expected = int(re.match(r"[\d,]+", link.text_content()).group(0).replace(",", ""))
        link.click()
        if panel == "panel-agents":
            assert agents_total(page) == expected, selector
        else:
            assert changelist_rows(page) == expected, selector
    assert expected == 4  # the failures of the last hour, the last link followed


def test_the_attention_panel_comes_first_links_to_what_it_counts_and_moves_live(live_page):
    page = live_page
    quiet = Agent.objects.create(name="quiet", status="Running", last_heartbeat=timezone.now() - dt.timedelta(hours=1))
    Agent.objects.create(name="heard", status="Running", last_heartbeat=timezone.now())
    worker = Agent.objects.create(name="worker", status="Processing", last_heartbeat=timezone.now())
    SupervisionNode.objects.create(node_id="att-down", node_type="Service", node_type_detail="x", status="failed")
    open_dashboard(page)
    assert page.locator(".dashboard-panel").first.get_attribute("id") == "panel-attention"
    items = page.locator("#panel-attention li")
    silent = page.locator("#panel-attention li[data-key='silent_agents']")
    expect(silent.locator(".attention-count")).to_have_text("1")
    expect(page.locator("#panel-attention li[data-key='failed_nodes'] .attention-count")).to_have_text("1")
    expect(page.locator("#panel-attention li[data-key='error_agents']")).to_have_count(0)

    # an agent fails: the panel says so without a reload
    publish(
        f"agent.{worker.pk}.events",
        {"StateChanged": {"agent_id": str(worker.pk), "old_state": "Processing", "new_state": "Error"}},
    )
    error_item = page.locator("#panel-attention li[data-key='error_agents']")
    expect(error_item.locator(".attention-text")).to_have_text(re.compile(r"^1 agent entered Error in the last 10 min"))
    assert page.evaluate("window.misterSmithLive.snapshots") == 1
    expect(items).to_have_count(3)

    # the silent count opens the silent agents, flagged
    silent.locator(".attention-count").click()
    assert agents_total(page) == 1
    row = page.locator(f"tr[data-agent-id='{quiet.pk}']")
    expect(row).to_have_attribute("data-silent", "")
    expect(row.locator(".agent-silent-mark")).to_be_visible()
    expect(page.locator("#agent-filter-silent")).to_be_checked()

    # in the whole list only the silent one is flagged; a heartbeat clears its mark live
    page.goto(f"{page.server.url}/admin/agents/live/")
    assert agents_total(page) == 3
    expect(page.locator("tr[data-silent]")).to_have_count(1)
    publish(
        f"agent.{quiet.pk}.events",
        {
            "Heartbeat": {
                "agent_id": str(quiet.pk),
                "timestamp": {"secs_since_epoch": int(timezone.now().timestamp()), "nanos_since_epoch": 0},
            }
        },
    )
    expect(page.locator("tr[data-silent]")).to_have_count(0)


def test_an_error_agents_page_offers_its_nodes_restart_live(live_page):
    page = live_page
    node = SupervisionNode.objects.create(node_id="restart-me", node_type="Service", node_type_detail="x")
    agent = Agent.objects.create(name="falls", status="Processing", supervision_node=node)
    open_detail(page, agent)
    restart = page.locator("#agent-node-restart")
    expect(restart).to_be_hidden()
    publish(
        f"agent.{agent.pk}.events",
        {"StateChanged": {"agent_id": str(agent.pk), "old_state": "Processing", "new_state": "Error"}},
    )
    expect(restart).to_be_visible()
    expect(restart).to_have_text("Restart through the supervisor")
    restart.click()
    expect(page.locator("body")).to_contain_text("restart-me")
    # the confirmation (this node has no policy: it says so) leads back to the agent
    expect(page.locator("a.cancel-link").first).to_have_attribute("href", f"/admin/agents/live/{agent.pk}/")


def test_agent_ids_in_events_lead_to_the_agent_and_its_place_in_the_tree(live_page):
    page = live_page
    node = SupervisionNode.objects.create(node_id="events-node", node_type="Service", node_type_detail="x")
    agent = Agent.objects.create(name="talker", status="Running", supervision_node=node)
    page.goto(f"{page.server.url}/admin/events/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    publish(f"agent.{agent.pk}.events", {"Output": {"agent_id": str(agent.pk), "content": "hello"}})
    row = page.locator(f"tr[data-subject='agent.{agent.pk}.events']").first
    expect(row.locator("a.agent-link")).to_have_text(str(agent.pk))
    row.locator("a.agent-tree-link").click()
    expect(page).to_have_url(re.compile(rf"/admin/supervision/tree/\?node={node.pk}$"))
    expect(page.locator("body")).to_contain_text("events-node")
    open_dashboard(page)
    newest = page.locator(f"#panel-events li:has(a.agent-link[href*='{agent.pk}'])").first
    newest.locator("a.agent-link").click()
    expect(page).to_have_url(re.compile(rf"/admin/agents/live/{agent.pk}/$"))


def test_verify_state_lists_failed_and_degraded_rows_first_with_links_to_the_fix(live_page):
    page = live_page
    InteractiveSession.objects.create(agent=Agent.objects.create(name="gone"), state="Ready", pid=dead_pid())
    page.goto(f"{page.server.url}/admin/state/verify/?refresh=2")
    statuses = page.locator("#verify-rows tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    rank = {"failed": 0, "degraded": 1, "ok": 2}
    assert "degraded" in statuses and statuses == sorted(statuses, key=rank.__getitem__)
    sessions = page.locator(
        "#verify-rows tr", has=page.get_by_role("cell", name="live sessions have a process", exact=True)
    )
    expect(sessions).to_have_attribute("data-status", "degraded")
    # the refresh keeps the order and the link (drawn by verify_state.js from the JSON)
    checked = page.locator("#verify-checked-at").get_attribute("datetime")
    expect(page.locator("#verify-checked-at")).not_to_have_attribute("datetime", checked, timeout=15_000)
    statuses = page.locator("#verify-rows tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == sorted(statuses, key=rank.__getitem__)
    sessions.locator("a.verify-fix").click()
    assert changelist_rows(page) == 1
