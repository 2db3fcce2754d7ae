"""Hostile values stored and shown in Chromium (issue 6, "Bad input"): no script runs, the text is
shown literally.

Every payload tries to run script two ways (setting ``window.__pwned`` and calling ``alert``) and
to inject elements (``img``, ``svg``). Each page is checked three ways: no dialog opened, nothing
set ``window.__pwned``, no injected element exists (so the check holds even where the CSP would
have stopped an injected script). Pages: the admin changelists and change forms, the supervision
tree, the live agents list and detail (with a hostile live Output), the discoveries page fed a
hostile discovery through the bridge, and the event log with a hostile event.
"""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import expect

from agents.models import Agent, InteractiveSession
from mistersmith.jetstream.client import connection
from supervision.models import SupervisionFailure, SupervisionNode

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOAD = (
    "<script>window.__pwned=1;alert(1)</script>"
    '"><img src=x onerror="window.__pwned=2;alert(2)">'
    '<svg onload="window.__pwned=3;alert(3)"></svg>'
    "'-alert(4)-'${alert(5)}{{7*7}}"
    " x'); DROP TABLE agents; --"
    " \u202eRTL\u202c \u200bzero-width \U0001f600"
)


def hostile(tag: str) -> str:
    """The payload with a tag that finds this test's rows."""
    return f"{PAYLOAD} {tag}"


class Guard:
    """Watches a page for dialogs and script errors; ``check`` asserts nothing ran or was injected."""

    def __init__(self, page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self) -> None:
        page = self.page
        assert page.evaluate("typeof window.__pwned") == "undefined", page.url
        assert self.dialogs == [], (page.url, self.dialogs)
        assert page.locator("img[src='x']").count() == 0, page.url
        assert page.locator("svg[onload], [onerror]").count() == 0, page.url
        assert self.errors == [], (page.url, self.errors)


def publish(subject: str, body: dict) -> None:
    connection().publish(subject, body, msg_id=uuid.uuid4().hex)


def test_admin_pages_and_the_tree_show_hostile_values_as_text(logged_in_page, live_server):
    page, base, tag = logged_in_page, live_server.url, uuid.uuid4().hex[:8]
    guard = Guard(page)
    name = hostile(tag)
    agent = Agent.objects.create(name=name, agent_type=name, model=name, allowed_tools=[name, "ok"])
    root = SupervisionNode.objects.create(node_id=f"root {name}", node_type="RootSupervisor")
    node = SupervisionNode.objects.create(
        node_id=name,
        node_type="Service",
        node_type_detail=name,
        parent=root,
        configuration={"note": name, name: [name]},
    )
    SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail=name, stack_trace=name)

    page.goto(f"{base}/admin/agents/agent/?q={tag}")
    expect(page.locator("#result_list")).to_contain_text(name)
    guard.check()
    page.goto(f"{base}/admin/agents/agent/{agent.pk}/change/")
    expect(page.locator("#id_name")).to_have_value(name)  # the form field holds the text itself
    expect(page.locator("#id_model")).to_have_value(name)
    guard.check()
    page.goto(f"{base}/admin/supervision/supervisionnode/?q={tag}")
    expect(page.locator("#result_list")).to_contain_text(name)
    guard.check()
    page.goto(f"{base}/admin/supervision/supervisionnode/{node.pk}/change/")
    expect(page.locator("#id_node_id")).to_have_value(name)
    expect(page.locator("#id_node_type_detail")).to_have_value(name)
    assert json.loads(page.locator("#id_configuration").input_value()) == node.configuration
    expect(page.locator("#failures-group")).to_contain_text(name)  # the latest failures inline
    guard.check()
    page.goto(f"{base}/admin/supervision/supervisionfailure/?node__id__exact={node.pk}")
    expect(page.locator("#result_list")).to_contain_text(name[:79])  # the list shows the detail's start
    guard.check()

    page.goto(f"{base}/admin/supervision/tree/?node={node.pk}")
    item = page.locator(f"li[role='treeitem'][data-node-id='{node.pk}']")
    expect(item.locator(":scope > .tree-row .tree-name")).to_have_text(name)
    item.locator(":scope > .tree-row .tree-type").click()
    expect(page.locator("#tree-panel h2")).to_have_text(name)
    page.fill("#tree-search-input", tag)
    expect(page.locator(f"#tree-search-results [data-node-id='{node.pk}']")).to_be_visible()
    guard.check()


def test_live_pages_show_hostile_agents_discoveries_and_events_as_text(live_page):
    page, base, tag = live_page, live_page.server.url, uuid.uuid4().hex[:8]
    guard = Guard(page)
    name = hostile(tag)
    agent = Agent.objects.create(name=name, model=name, status="Running")
    InteractiveSession.objects.create(agent=agent, state="Ready")

    page.goto(f"{base}/admin/agents/live/?q={tag}")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    row = page.locator(f"tr[data-agent-id='{agent.pk}']")
    expect(row.locator(".agent-name > a")).to_have_text(name)
    guard.check()

    page.goto(f"{base}/admin/agents/live/{agent.pk}/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    page.wait_for_function("document.body.dataset.agentReady === 'true'")
    expect(page.locator(".breadcrumbs")).to_contain_text(name)
    expect(page.locator("#agent-config")).to_contain_text(name)  # the model
    output = hostile(f"output {tag}")
    publish(f"agent.{agent.pk}.events", {"Output": {"agent_id": str(agent.pk), "content": output}})
    expect(page.locator("#agent-output")).to_contain_text(output)  # live, as text
    page.reload()
    page.wait_for_function("document.body.dataset.agentReady === 'true'")
    expect(page.locator("#agent-sessions")).to_contain_text(output)  # stored in the session, as text
    guard.check()

    page.goto(f"{base}/admin/discoveries/?keywords={tag}")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    discovery = {
        "agent_id": f"agent-{tag}",
        "agent_role": hostile("role")[:100],
        "discovery_type": "Insight",
        "content": hostile(f"discovery {tag}"),
        "confidence": 0.9,
        "timestamp": "2026-11-26T10:00:00Z",
        "related_to": hostile("related")[:200],
    }
    publish(f"discoveries.agent-{tag}.insights", discovery)
    row = page.locator("#discovery-table tbody tr").filter(has_text=f"agent-{tag}")
    expect(row.locator(".discovery-content")).to_have_text(discovery["content"])
    expect(row).to_contain_text(discovery["agent_role"])
    guard.check()

    page.goto(f"{base}/admin/events/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    event = hostile(f"event {tag}")
    publish(f"agent.{agent.pk}.output", {"Output": {"agent_id": str(agent.pk), "content": event}})
    row = page.locator("#live-rows tr").filter(has_text=f"event {tag}")
    expect(row).to_have_count(1)
    assert row.locator("code *").count() == 0  # the excerpt is text, nothing in it became an element
    guard.check()
