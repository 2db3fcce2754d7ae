"""One incident as one story in Chromium: from a failure in the tree's panel and in the admin's
failure list to its incident page, whose timeline shows the failure, the supervisor's decision,
the restarts with their command and completion, the agent's events and the escalation."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent
from mistersmith.jetstream import client as nats
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy, SupervisionRestart
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_script_errors(logged_in_page):
    errors: list[str] = []
    logged_in_page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert errors == []


@pytest.fixture
def incident(admin_user):
    """A worker whose third failure in its window was restarted (attempt 3, 400 ms, Exponential), then
    restarted again from the console, its agent reporting Error then Running; and a sibling whose
    failure escalated to the pool, which failed right after."""
    tag = uuid.uuid4().hex[:6]
    root = SupervisionNode.objects.create(node_id=f"inc-root-{tag}", node_type="RootSupervisor", status="active")
    pool_agent = Agent.objects.create(name=f"inc-pool-agent-{tag}", status="Running")
    pool = SupervisionNode.objects.create(
        node_id=f"inc-pool-{tag}", node_type="AgentSupervisor", node_type_detail="pool", parent=root, agent=pool_agent
    )
    agent = Agent.objects.create(name=f"inc-agent-{tag}", status="Running")
    worker = SupervisionNode.objects.create(
        node_id=f"inc-worker-{tag}", node_type="Worker", node_type_detail="claude-cli", parent=pool, agent=agent
    )
    SupervisionPolicy.objects.create(
        node=worker,
        supervision_strategy="OneForOne",
        max_restarts=5,
        time_window_seconds=60,
        backoff_strategy="Exponential",
        backoff_factor=Decimal("2.00"),
        min_restart_delay_ms=100,
        max_restart_delay_ms=30_000,
        created_at=timezone.now() - dt.timedelta(hours=1),  # set before the failures: as the supervisor saw it
        updated_at=timezone.now() - dt.timedelta(hours=1),
    )
    now = timezone.now()
    for seconds in (40, 20):
        SupervisionFailure.objects.create(
            node=worker,
            failure_reason="Crash",
            failure_detail="exit 137",
            occurred_at=now - dt.timedelta(seconds=seconds),
        )
    failure = SupervisionFailure.objects.create(
        node=worker,
        failure_reason="HeartbeatTimeout",
        failure_detail="no heartbeat for 30 s",
        occurred_at=now - dt.timedelta(seconds=3),
        restart_attempted=True,
        recovery_action="restart",
    )
    SupervisionRestart.objects.create(
        node=worker,
        failure=failure,
        restart_attempt_number=3,
        restart_delay_ms=400,
        started_at=failure.occurred_at + dt.timedelta(milliseconds=400),
        completed_at=failure.occurred_at + dt.timedelta(seconds=1),
        success=True,
    )
    SupervisionRestart.objects.create(
        node=worker,
        restart_attempt_number=1,
        restart_delay_ms=100,
        started_at=now - dt.timedelta(seconds=1),
        completed_at=now,
        success=True,
        requested_by=admin_user,
        reason="checking the new instance",
        command_sequence=7,
    )
    for old, new in (("Running", "Error"), ("Error", "Running")):
        body = {"StateChanged": {"agent_id": str(agent.pk), "old_state": old, "new_state": new}}
        nats.connection().publish(f"agent.{agent.pk}.events", body, msg_id=uuid.uuid4().hex)
    return {"worker": worker, "failure": failure, "pool": pool}


def test_from_the_tree_panel_to_the_incident_timeline(logged_in_page, live_server, incident):
    page = logged_in_page
    worker, failure = incident["worker"], incident["failure"]
    page.goto(f"{live_server.url}/admin/supervision/tree/?node={worker.pk}")
    page.wait_for_selector(f"#tree-panel h2:text-is('{worker.node_id}')")
    row = page.locator("#tree-panel tr", has_text="no heartbeat for 30 s")
    row.get_by_role("link", name="Incident").click()
    page.wait_for_selector("#incident-timeline")
    assert page.url.endswith(f"/admin/incidents/{failure.pk}/")
    expect(page.locator("#incident-counter")).to_contain_text("3 of max_restarts 5")
    expect(page.locator("#incident-restart")).to_contain_text("attempt 3, delay 400 ms")
    expect(page.locator("#incident-escalation")).to_have_text("none")
    expect(page.locator("#incident-decision")).not_to_contain_text("The policy was edited after this failure")
    timeline = page.locator("#incident-timeline > li")
    kinds = [timeline.nth(i).get_attribute("data-kind") for i in range(timeline.count())]
    assert kinds[:2] == ["failure", "decision"]
    assert {"restart", "command", "completion", "agent_event"} <= set(kinds)
    expect(page.locator("#incident-timeline")).to_contain_text("Agent event: StateChanged (Running → Error)")
    expect(page.locator("#incident-timeline")).to_contain_text("RestartNode command sent")
    docs_screenshot(page.locator("#content"), "incident")
    record = page.locator("#incident-timeline li[data-kind='restart']").first.get_by_role("link", name="record")
    record.click()
    page.wait_for_selector("#supervisionrestart_form")


def test_from_the_failure_list_to_an_escalation(logged_in_page, live_server, incident):
    pool = incident["pool"]
    sibling_agent = Agent.objects.create(name=f"esc-agent-{uuid.uuid4().hex[:6]}", status="Running")
    sibling = SupervisionNode.objects.create(
        node_id=f"esc-worker-{uuid.uuid4().hex[:6]}",
        node_type="Worker",
        node_type_detail="claude-cli",
        parent=pool,
        agent=sibling_agent,
    )
    SupervisionPolicy.objects.create(node=sibling, max_restarts=1, time_window_seconds=60)
    now = timezone.now()
    failure = SupervisionFailure.objects.create(
        node=sibling, failure_reason="Crash", failure_detail="segfault", occurred_at=now, escalated_to_parent=True
    )
    SupervisionFailure.objects.create(
        node=pool,
        failure_reason="UnhandledError",
        failure_detail="child limit",
        occurred_at=now + dt.timedelta(seconds=1),
    )
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/supervision/supervisionfailure/?q={sibling.node_id}")
    page.locator("#result_list a.incident-link").click()
    page.wait_for_selector("#incident-timeline")
    assert page.url.endswith(f"/admin/incidents/{failure.pk}/")
    expect(page.locator("#incident-escalation")).to_contain_text(f"to {pool.node_id}")
    parent = page.locator("#incident-timeline li[data-kind='parent_failure']")
    expect(parent).to_contain_text(f"Parent {pool.node_id} failed: UnhandledError")
    parent.get_by_role("link", name="incident").click()
    page.wait_for_selector("#incident-failure")
    expect(page.locator("#incident-failure")).to_contain_text("child limit")
