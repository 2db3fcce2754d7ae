"""Issue 12, item 7 in Chromium: a user who may see agents and nodes, and nothing else, gets pages that
say what is hidden, and none of the hidden rows (the JSON behind them is checked in
tests/test_live_json_permissions.py)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent, AgentAnomaly, AgentInstance, InteractiveSession, SessionMessage
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def watcher_page(page, asgi_server):
    """Chromium logged in as staff with only the agent and node view permissions."""
    name = f"watcher-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, password="watcher-pass-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_agent", "view_supervisionnode"]))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{asgi_server.url}/admin/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", "watcher-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.server = asgi_server
    yield page
    assert errors == []


def test_the_agent_page_says_what_is_hidden_and_shows_none_of_it(watcher_page):
    agent = Agent.objects.create(name=f"hidden-{uuid.uuid4().hex[:6]}", status="Running")
    AgentInstance.objects.create(agent=agent, status="running", host_name="secret-host", port=1)
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    SessionMessage.objects.create(
        session=session, position=0, role="user", content="secret prompt", timestamp=timezone.now()
    )
    AgentAnomaly.objects.create(agent_id=agent.pk, event_kind="Spawned", detail="secret anomaly")
    page = watcher_page
    page.goto(f"{page.server.url}/admin/agents/live/{agent.pk}/")
    page.wait_for_function("document.body.dataset.agentReady === 'true'")
    body = page.locator("body")
    expect(body).to_contain_text("Hidden: you may not view agent instances.")
    expect(body).to_contain_text("Hidden: you may not view agent anomalies.")
    expect(body).to_contain_text("Hidden: the stored event history needs the permission to watch the event log.")
    text = body.inner_text()
    assert "secret-host" not in text and "secret prompt" not in text and "secret anomaly" not in text
    assert agent.name in text


def test_the_tree_panel_says_what_is_hidden_and_shows_none_of_it(watcher_page):
    root = SupervisionNode.objects.create(node_id=f"hid-root-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    SupervisionPolicy.objects.create(node=root, max_restarts=9, time_window_seconds=77)
    SupervisionFailure.objects.create(node=root, failure_reason="Crash", failure_detail="secret failure")
    page = watcher_page
    page.goto(f"{page.server.url}/admin/supervision/tree/?node={root.pk}")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    panel = page.locator("#tree-panel")
    expect(panel.locator("h2")).to_have_text(root.node_id)
    expect(panel).to_contain_text("Hidden: you may not view supervision failures.")
    expect(panel).to_contain_text("a policy (hidden: you may not view supervision policies)")
    text = page.locator("body").inner_text()
    assert "secret failure" not in text and "max 9 restarts" not in text and "77 s" not in text
