"""Issue 14, items 1 and 5 in Chromium, on the real ASGI server with its bridge: a restart's outcome
reaches the page it started from and follows the person to another live page (pending, then
succeeded, failed or timed out, with the restart record linked and the tree row marked); a bulk
Pause / Resume from the live list confirms with a count and shows each agent's result."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from agents.models import Agent, BulkCommandRun
from mistersmith.jetstream.client import connection
from mistersmith.jetstream.messages import envelope
from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart
from tests.e2e.test_agents_live import script_errors  # noqa: F401 (the fixture: no uncaught script error)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("script_errors")]


def restartable(name: str, *, escalation_timeout: int) -> SupervisionNode:
    root = SupervisionNode.objects.create(node_id=f"{name}-root", node_type="RootSupervisor")
    node = SupervisionNode.objects.create(node_id=name, node_type="Service", node_type_detail="db", parent=root)
    SupervisionPolicy.objects.create(
        node=node, backoff_strategy="Fixed", min_restart_delay_ms=10, escalation_timeout_seconds=escalation_timeout
    )
    return node


def restart_from_the_tree(page, node: SupervisionNode) -> SupervisionRestart:
    """The tree's way: the confirmation with next= the tree at the node, then back there."""
    tree = f"{reverse('supervision:tree')}?node={node.pk}"
    page.goto(f"{page.server.url}{reverse('supervision:restart', args=[node.pk])}?next={tree}")
    page.click("input[type=submit].default")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    return SupervisionRestart.objects.get(node=node)


def answer(restart: SupervisionRestart, *, success: bool, error: str | None = None) -> None:
    """The runtime's RestartCompleted on system.control, as the simulator sends it."""
    body = {"restart_id": str(restart.pk), "node_id": str(restart.node_id), "success": success}
    if error:
        body["error_message"] = error
    message_id = str(uuid.uuid4())
    message = envelope({"RestartCompleted": body}, message_id=message_id, correlation_id=str(restart.pk))
    connection().publish("system.control", message, msg_id=message_id)


def notice(page, restart: SupervisionRestart):
    return page.locator(f"#action-notices li[data-action-id='{restart.pk}']")


def test_a_restarts_outcome_reaches_the_tree_and_follows_to_another_live_page(live_page):
    node = restartable("e2e-act-node", escalation_timeout=120)
    restart = restart_from_the_tree(live_page, node)
    shown = notice(live_page, restart)
    expect(shown).to_have_attribute("data-action-state", "pending")
    expect(shown).to_contain_text("Restart of e2e-act-node requested, waiting for the runtime")
    row = live_page.locator(f"li[data-node-id='{node.pk}'] > div .tree-title")
    expect(row.locator(".action-mark")).to_have_text("restarting…")

    # The person moves on to the agents list (its socket carries "agents" only); the runtime answers.
    live_page.goto(f"{live_page.server.url}{reverse('agent_pages:list')}")
    expect(notice(live_page, restart)).to_have_attribute("data-action-state", "pending")
    answer(restart, success=True)
    shown = notice(live_page, restart)
    expect(shown).to_have_attribute("data-action-state", "succeeded")
    expect(shown).to_contain_text("Restart of e2e-act-node succeeded.")
    record = reverse("admin:supervision_supervisionrestart_change", args=[restart.pk])
    expect(shown.locator("a.action-record")).to_have_attribute("href", record)
    assert (
        live_page.locator("#action-notices").inner_text().strip().endswith("\N{MULTIPLICATION SIGN}")
    )  # nothing stray after them

    # Back in the tree, the row says it; the record link opens the restart's admin page.
    live_page.goto(f"{live_page.server.url}{reverse('supervision:tree')}?node={node.pk}")
    expect(row.locator(".action-mark")).to_have_text("restarted")
    notice(live_page, restart).locator("a.action-record").click()
    expect(live_page).to_have_url(f"{live_page.server.url}{record}")


def test_the_tree_hears_a_failure_at_once_and_a_dismissed_notice_stays_away(live_page):
    node = restartable("e2e-act-fails", escalation_timeout=120)
    restart = restart_from_the_tree(live_page, node)
    expect(notice(live_page, restart)).to_have_attribute("data-action-state", "pending")
    answer(restart, success=False, error="the port stayed closed")
    shown = notice(live_page, restart)
    expect(shown).to_have_attribute("data-action-state", "failed")
    expect(shown).to_contain_text("Restart of e2e-act-fails failed: the port stayed closed")
    expect(live_page.locator(f"li[data-node-id='{node.pk}'] > div .action-mark")).to_have_text("restart failed")
    shown.locator(".action-dismiss").click()
    expect(shown).to_have_count(0)
    live_page.reload()
    live_page.wait_for_selector("#supervision-tree[data-ready='true']")
    expect(live_page.locator(f"li[data-node-id='{node.pk}'] > div .action-mark")).to_have_text("restart failed")
    expect(notice(live_page, restart)).to_have_count(0)


def test_a_restart_nobody_answers_times_out_on_the_page(live_page):
    node = restartable("e2e-act-silent", escalation_timeout=1)
    restart = restart_from_the_tree(live_page, node)
    shown = notice(live_page, restart)
    expect(shown).to_have_attribute("data-action-state", "timed_out", timeout=20000)  # the bridge's sweep
    expect(shown).to_contain_text("Restart of e2e-act-silent timed out")
    expect(live_page.locator(f"li[data-node-id='{node.pk}'] > div .action-mark")).to_have_text("restart timed out")


def test_bulk_pause_and_resume_from_the_list_with_a_count_and_each_result(live_page, stand_in):
    agents = [Agent.objects.create(name=f"e2e-bulk-{i}", status="Running") for i in range(3)]
    page = live_page
    page.goto(f"{page.server.url}{reverse('agent_pages:list')}?q=e2e-bulk-")
    expect(page.locator("#agents-table")).to_have_attribute("data-ready", "true")
    for agent in agents[:2]:
        page.check(f"tr[data-agent-id='{agent.pk}'] .agent-select input")
    expect(page.locator("#agent-bulk-count")).to_have_text("2")
    page.select_option("#agent-bulk-command", "Pause")
    page.click("#agent-bulk-selected")

    expect(page.locator("#bulk-count")).to_contain_text("Pause 2 agents")
    expect(page.locator("#bulk-reachable")).to_contain_text("2 of them")
    assert not BulkCommandRun.objects.exists()  # nothing before the yes
    page.click("#bulk-yes")
    expect(page.locator("#bulk-progress")).to_have_attribute("data-state", "done")
    expect(page.locator("#bulk-results tbody tr[data-outcome='ok']")).to_have_count(2)
    expect(page.locator("#bulk-progress")).to_contain_text("2 done")

    # The list keeps the outcome on each row; the notice links the run.
    page.goto(f"{page.server.url}{reverse('agent_pages:list')}?q=e2e-bulk-")
    for agent in agents[:2]:
        row = page.locator(f"tr[data-agent-id='{agent.pk}']")
        expect(row.locator(".agent-state")).to_have_text("Paused")
        expect(row.locator(".agent-command-mark")).to_have_text("Pause: done")
    expect(page.locator(f"tr[data-agent-id='{agents[2].pk}'] .agent-command-mark")).to_have_count(0)
    expect(page.locator("#action-notices li[data-action-kind='bulk']")).to_contain_text("Bulk Pause of 2 agents done")

    # Everything matching the filter: 3 agents, 2 of which can be resumed; the third is refused.
    page.select_option("#agent-bulk-command", "Resume")
    page.click("#agent-bulk-filter")
    expect(page.locator("#bulk-count")).to_contain_text("Resume 3 agents")
    expect(page.locator("#bulk-reachable")).to_contain_text("2 of them")
    page.click("#bulk-yes")
    expect(page.locator("#bulk-progress")).to_have_attribute("data-state", "done")
    expect(page.locator("#bulk-results tbody tr[data-outcome='ok']")).to_have_count(2)
    expect(page.locator("#bulk-results tbody tr[data-outcome='refused']")).to_have_count(1)
    assert sorted(Agent.objects.filter(name__startswith="e2e-bulk-").values_list("status", flat=True)) == [
        "Running",
        "Running",
        "Running",
    ]


def test_a_bulk_restart_from_the_node_list_follows_each_restart_on_its_row(live_page):
    first = restartable("e2e-act-bulk-1", escalation_timeout=120)
    second = restartable("e2e-act-bulk-2", escalation_timeout=120)
    page = live_page
    page.goto(f"{page.server.url}{reverse('admin:supervision_supervisionnode_changelist')}?q=e2e-act-bulk-")
    for node in (first, second):
        page.check(f"#result_list input.action-select[value='{node.pk}']")
    page.select_option("select[name=action]", "restart_selected")
    page.click("button[name=index]")
    page.click("input[type=submit].default")  # the confirmation: what each restart would do
    expect(page.locator("ul.messagelist li.success")).to_have_count(2)
    restarts = {node.node_id: SupervisionRestart.objects.get(node=node) for node in (first, second)}
    marks = {
        name: page.locator(f"#result_list tr:has(input[value='{restarts[name].node_id}']) .action-mark")
        for name in restarts
    }
    for name in restarts:
        expect(notice(page, restarts[name])).to_have_attribute("data-action-state", "pending")
        expect(marks[name]).to_have_text("restarting…")

    answer(restarts["e2e-act-bulk-1"], success=True)
    answer(restarts["e2e-act-bulk-2"], success=False, error="no disk")
    expect(marks["e2e-act-bulk-1"]).to_have_text("restarted")
    expect(marks["e2e-act-bulk-2"]).to_have_text("restart failed")
    expect(notice(page, restarts["e2e-act-bulk-2"])).to_contain_text("Restart of e2e-act-bulk-2 failed: no disk")
