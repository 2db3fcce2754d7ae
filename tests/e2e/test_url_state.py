"""Issue 14, item 4, in Chromium: the live pages keep their state in the URL (a reload keeps it,
Back restores the state before), and the "Views" menu saves, opens and deletes a user's views."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from mistersmith.jetstream import client as nats
from mistersmith.live.models import SavedView
from supervision.models import SupervisionNode
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def query(page) -> dict[str, str]:
    """The page's query string now, one value per name."""
    return {name: values[-1] for name, values in parse_qs(urlsplit(page.url).query).items()}


def wait_for_query(page, expected: dict[str, str]) -> None:
    page.wait_for_url(lambda url: {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()} == expected)


@pytest.fixture
def script_errors(page):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors
    assert errors == []


def open_event_log(page, query_string: str = "") -> None:
    page.goto(f"{page.server.url}/admin/events/{query_string}")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")


def test_event_log_filters_pause_and_replay_live_in_the_url(live_page, script_errors):
    page = live_page
    agent = uuid.uuid4()
    subject = f"agent.{agent}.output"
    first = nats.connection().publish(subject, {"Output": {"agent_id": str(agent), "content": "one"}}).seq
    open_event_log(page)

    page.select_option("#filter-stream", "AGENT_EVENTS")
    wait_for_query(page, {"stream": "AGENT_EVENTS"})
    page.fill("#filter-subject", "agent.*.output")
    page.fill("#filter-text", "needle")
    page.click("#pause-button")
    wait_for_query(page, {"stream": "AGENT_EVENTS", "subject": "agent.*.output", "text": "needle", "paused": "1"})

    page.reload()
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(page.locator("#filter-stream")).to_have_value("AGENT_EVENTS")
    expect(page.locator("#filter-subject")).to_have_value("agent.*.output")
    expect(page.locator("#filter-text")).to_have_value("needle")
    expect(page.locator("#pause-button")).to_have_text("Resume")

    # Back: one step per deliberate change (a burst of typing into one field is one step).
    page.go_back()
    expect(page.locator("#pause-button")).to_have_text("Pause")
    expect(page.locator("#filter-text")).to_have_value("needle")
    page.go_back()
    expect(page.locator("#filter-text")).to_have_value("")
    expect(page.locator("#filter-subject")).to_have_value("agent.*.output")
    page.go_back()
    expect(page.locator("#filter-subject")).to_have_value("")
    expect(page.locator("#filter-stream")).to_have_value("AGENT_EVENTS")
    page.go_back()
    expect(page.locator("#filter-stream")).to_have_value("")
    assert query(page) == {}

    # A replay is a position in the URL: a reload reads it again, Back leaves it.
    page.select_option("#replay-stream", "AGENT_EVENTS")
    page.fill("#replay-subject", subject)
    page.fill("#replay-sequence", str(first))
    page.fill("#replay-limit", "5")
    page.click("#replay-submit")
    expect(page.locator("#replay-rows tr")).to_have_count(1)
    assert query(page) == {
        "replay": "AGENT_EVENTS",
        "replay_subject": subject,
        "from_sequence": str(first),
        "limit": "5",
    }
    page.reload()
    expect(page.locator("#replay-rows tr")).to_have_count(1)
    expect(page.locator("#replay-sequence")).to_have_value(str(first))
    expect(page.locator("#replay-rows code")).to_contain_text("one")
    page.go_back()
    expect(page.locator("#replay-table")).to_be_hidden()
    assert query(page) == {}


def test_discoveries_filter_lives_in_the_url(live_page, script_errors):
    page = live_page
    page.goto(f"{page.server.url}/admin/discoveries/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")

    page.check("input[name=types][value=Pattern]")
    page.click("#discovery-filter input[type=submit]")
    wait_for_query(page, {"types": "Pattern"})
    page.fill("#id_min_confidence", "0.5")
    page.click("#discovery-filter input[type=submit]")
    wait_for_query(page, {"types": "Pattern", "min_confidence": "0.5"})

    page.reload()
    expect(page.locator("input[name=types][value=Pattern]")).to_be_checked()
    expect(page.locator("#id_min_confidence")).to_have_value("0.5")

    page.go_back()
    expect(page.locator("#id_min_confidence")).to_have_value("")
    expect(page.locator("input[name=types][value=Pattern]")).to_be_checked()
    page.go_back()
    expect(page.locator("input[name=types][value=Pattern]")).not_to_be_checked()
    assert query(page) == {}


def tree_node(name: str, parent: SupervisionNode | None = None, node_type: str = "Service") -> SupervisionNode:
    fields = {} if node_type == "RootSupervisor" else {"node_type_detail": "detail"}
    return SupervisionNode.objects.create(node_id=name, node_type=node_type, parent=parent, **fields)


def test_tree_search_and_selected_node_live_in_the_url(logged_in_page, live_server, script_errors):
    page = logged_in_page
    root = tree_node("url-root", node_type="RootSupervisor")
    first = tree_node("url-first", root)
    second = tree_node("url-second", root)
    page.goto(f"{live_server.url}/admin/supervision/tree/")
    page.wait_for_selector("#supervision-tree[data-ready='true']")

    def choose(node: SupervisionNode) -> None:
        page.locator(f"li[data-node-id='{node.pk}'] > .tree-row .tree-type").click()
        page.wait_for_selector(f"#tree-panel h2:text-is('{node.node_id}')")

    choose(first)
    choose(second)
    wait_for_query(page, {"node": str(second.pk)})
    page.fill("#tree-search-input", "url-fi")
    wait_for_query(page, {"node": str(second.pk), "find": "url-fi"})

    page.reload()
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    expect(page.locator("#tree-search-input")).to_have_value("url-fi")
    expect(page.locator(f"li[data-node-id='{second.pk}']")).to_have_attribute("aria-selected", "true")

    page.go_back()  # before the search text
    expect(page.locator("#tree-search-input")).to_have_value("")
    page.go_back()  # before the second node was chosen
    expect(page.locator(f"li[data-node-id='{first.pk}']")).to_have_attribute("aria-selected", "true")
    expect(page.locator(f"li[data-node-id='{second.pk}']")).to_have_attribute("aria-selected", "false")
    page.wait_for_selector("#tree-panel h2:text-is('url-first')")
    assert query(page) == {"node": str(first.pk)}


def test_save_open_and_delete_a_view(live_page, admin_user, script_errors):
    page = live_page
    open_event_log(page, "?stream=SYSTEM_EVENTS&text=restart")
    name = '<img src=x onerror="window.__xss=1"> restarts'

    page.click("#saved-views > summary")
    expect(page.locator("#saved-views-status")).to_have_text("No saved views of this page yet.")
    page.fill("#saved-view-name", name)
    page.click("#saved-views-form button[type=submit]")
    expect(page.locator("#saved-views-status")).to_have_text(f'Saved "{name}".')
    saved = SavedView.objects.get(user=admin_user)
    assert (saved.page, saved.query) == ("/admin/events/", "stream=SYSTEM_EVENTS&text=restart")

    # Another page load, with nothing in the URL: the menu opens the view.
    open_event_log(page)
    expect(page.locator("#filter-text")).to_have_value("")
    page.click("#saved-views > summary")
    link = page.locator("#saved-views-list a")
    expect(link).to_have_text(name)  # the name is text, never markup
    docs_screenshot(page, "saved-views-menu")
    link.click()
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    assert query(page) == {"stream": "SYSTEM_EVENTS", "text": "restart"}
    expect(page.locator("#filter-stream")).to_have_value("SYSTEM_EVENTS")
    expect(page.locator("#filter-text")).to_have_value("restart")
    assert page.evaluate("window.__xss") is None

    page.click("#saved-views > summary")
    expect(page.locator("#saved-views-list a")).to_have_attribute("aria-current", "page")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#saved-views-list .saved-view-delete")
    expect(page.locator("#saved-views-list li")).to_have_count(0)
    expect(page.locator("#saved-views-status")).to_have_text(f'Deleted "{name}".')
    assert not SavedView.objects.filter(user=admin_user).exists()
