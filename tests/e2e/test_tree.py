"""The supervision tree in a real browser: expand, keyboard, search, panel, deep links, escaping."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agents.models import Agent
from mistersmith.simulator import demo
from supervision import selectors
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy, SupervisionRestart
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TREE_PATH = "/admin/supervision/tree/"
XSS_NAME = '<img src=x onerror="window.__xss=1">'


def seed(prefix: str, nodes: int, failures: int = 0) -> None:
    demo.seed(prefix=prefix, nodes=nodes, levels=5, failures=failures, hive=False)


def node(name: str, parent: SupervisionNode | None = None, node_type: str = "Service", **fields) -> SupervisionNode:
    if node_type != "RootSupervisor":
        fields.setdefault("node_type_detail", "detail")
    if node_type in ("Worker", "AgentSupervisor"):
        fields.setdefault("agent", Agent.objects.create(name=f"{name}-agent"))
    return SupervisionNode.objects.create(node_id=name, node_type=node_type, parent=parent, **fields)


@pytest.fixture
def small_tree() -> dict[str, SupervisionNode]:
    """root > (sup > (w1, w2, w3), svc)."""
    root = node("e2t-root", node_type="RootSupervisor")
    sup = node("e2t-sup", root, node_type="AgentSupervisor")
    workers = [node(f"e2t-w{i}", sup, node_type="Worker") for i in (1, 2, 3)]
    svc = node("e2t-svc", root)
    return {"root": root, "sup": sup, "w1": workers[0], "w2": workers[1], "svc": svc}


@pytest.fixture(autouse=True)
def no_script_errors(logged_in_page):
    """Every test here fails on an uncaught error in the page's scripts."""
    errors: list[str] = []
    logged_in_page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert errors == []


def open_tree(page, live_server, query: str = "") -> None:
    page.goto(f"{live_server.url}{TREE_PATH}{query}")
    page.wait_for_selector("#supervision-tree[data-ready='true']")


def item(page, obj: SupervisionNode):
    return page.locator(f"li[role='treeitem'][data-node-id='{obj.pk}']")


def focused_node_id(page) -> str | None:
    return page.evaluate("document.activeElement.dataset.nodeId ?? null")


def test_expand_a_node_loads_its_children(logged_in_page, live_server, small_tree):
    page = logged_in_page
    open_tree(page, live_server)
    sup = item(page, small_tree["sup"])
    assert sup.get_attribute("aria-expanded") == "false"
    assert item(page, small_tree["w1"]).count() == 0  # the third level loads on demand
    sup.locator(":scope > .tree-row .tree-toggle").click()
    page.wait_for_selector(f"li[data-node-id='{small_tree['w1'].pk}']")
    assert sup.get_attribute("aria-expanded") == "true"
    names = sup.locator(":scope > ul[role='group'] > li .tree-name").all_inner_texts()
    assert names == ["e2t-w1", "e2t-w2", "e2t-w3"]
    w2 = item(page, small_tree["w2"])
    assert (w2.get_attribute("aria-level"), w2.get_attribute("aria-posinset"), w2.get_attribute("aria-setsize")) == (
        "3",
        "2",
        "3",
    )


def test_keyboard_moves_expands_and_collapses(logged_in_page, live_server, small_tree):
    page = logged_in_page
    open_tree(page, live_server)
    root, sup = item(page, small_tree["root"]), item(page, small_tree["sup"])
    assert root.get_attribute("tabindex") == "0"
    root.focus()
    page.keyboard.press("ArrowDown")
    assert focused_node_id(page) == str(small_tree["sup"].pk)
    assert sup.get_attribute("tabindex") == "0" and root.get_attribute("tabindex") == "-1"
    page.keyboard.press("ArrowRight")  # expands
    page.wait_for_function(
        f"document.querySelector(\"[data-node-id='{small_tree['sup'].pk}']\").ariaExpanded === 'true'"
    )
    assert focused_node_id(page) == str(small_tree["sup"].pk)
    page.keyboard.press("ArrowRight")  # to the first child
    assert focused_node_id(page) == str(small_tree["w1"].pk)
    page.keyboard.press("ArrowDown")
    assert focused_node_id(page) == str(small_tree["w2"].pk)
    page.keyboard.press("ArrowLeft")  # a leaf: to its parent
    assert focused_node_id(page) == str(small_tree["sup"].pk)
    page.keyboard.press("ArrowLeft")  # collapses
    assert sup.get_attribute("aria-expanded") == "false"
    assert not item(page, small_tree["w1"]).is_visible()
    page.keyboard.press("ArrowDown")  # past the collapsed children
    assert focused_node_id(page) == str(small_tree["svc"].pk)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")  # selects: the panel opens
    page.wait_for_selector("#tree-panel h2:text-is('e2t-sup')")
    assert sup.get_attribute("aria-selected") == "true"
    assert page.locator("[role='tree'] [aria-selected='true']").count() == 1


def test_search_finds_a_deep_node_and_opens_its_path(logged_in_page, live_server):
    seed("e2s", nodes=400)
    target = SupervisionNode.objects.filter(node_id__startswith="e2s-worker").order_by("node_id").last()
    ancestors = []
    parent = target.parent
    while parent is not None:
        ancestors.append(parent)
        parent = parent.parent
    page = logged_in_page
    open_tree(page, live_server)
    assert item(page, target).count() == 0
    page.fill("#tree-search-input", target.node_id.upper())
    page.wait_for_selector(f"#tree-search-results [data-node-id='{target.pk}']")
    path = page.locator(f"#tree-search-results [data-node-id='{target.pk}'] .tree-search-path").inner_text()
    assert path.startswith("e2s-root")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"li[data-node-id='{target.pk}'][aria-selected='true']")
    assert item(page, target).is_visible()
    assert all(item(page, a).get_attribute("aria-expanded") == "true" for a in ancestors)
    assert focused_node_id(page) == str(target.pk)
    page.wait_for_selector(f"#tree-panel h2:text-is('{target.node_id}')")
    assert f"node={target.pk}" in page.url


def test_panel_shows_details_and_the_restart_link(logged_in_page, live_server, small_tree):
    sup = small_tree["sup"]
    SupervisionPolicy.objects.create(node=sup, max_restarts=4, time_window_seconds=120)
    SupervisionFailure.objects.create(
        node=sup, failure_reason="HeartbeatTimeout", failure_detail="no heartbeat for 30s"
    )
    page = logged_in_page
    open_tree(page, live_server)
    item(page, sup).locator(":scope > .tree-row .tree-type").click()
    panel = page.locator("#tree-panel")
    page.wait_for_selector("#tree-panel h2:text-is('e2t-sup')")
    text = panel.inner_text()
    assert "AgentSupervisor" in text and "e2t-sup-agent" in text
    assert "OneForOne, max 4 restarts / 120 s" in text
    assert "1 of 4 in 120 s" in text
    assert "no heartbeat for 30s" in text
    restart = panel.get_by_role("link", name="Restart…")
    assert restart.is_visible()
    assert restart.get_attribute("href").startswith(reverse("supervision:restart", args=[sup.pk]) + "?next=")
    change = panel.get_by_role("link", name="Change this node in the admin")
    assert change.get_attribute("href") == reverse("admin:supervision_supervisionnode_change", args=[sup.pk])
    row = item(page, sup).locator(":scope > .tree-row")
    assert "failures in window: 1 of 4 in 120 s" in row.inner_text()
    assert row.locator(".tree-status-badge").inner_text() == "inactive"


def test_deep_link_opens_the_tree_at_the_node(logged_in_page, live_server, small_tree):
    page = logged_in_page
    open_tree(page, live_server, f"?node={small_tree['w2'].pk}")
    w2 = item(page, small_tree["w2"])
    assert w2.get_attribute("aria-selected") == "true"
    assert w2.is_visible()
    assert item(page, small_tree["sup"]).get_attribute("aria-expanded") == "true"
    assert focused_node_id(page) == str(small_tree["w2"].pk)
    page.wait_for_selector("#tree-panel h2:text-is('e2t-w2')")


def test_a_script_in_a_name_stays_text(logged_in_page, live_server, small_tree):
    evil = node(XSS_NAME, small_tree["root"], node_type="AgentSupervisor")
    node("e2t-under-evil", evil)
    page = logged_in_page
    open_tree(page, live_server)
    row = item(page, evil)
    assert row.locator(":scope > .tree-row .tree-name").inner_text() == XSS_NAME
    row.locator(":scope > .tree-row .tree-toggle").click()  # children drawn from the JSON endpoint
    page.wait_for_selector("li[role='treeitem']:has-text('e2t-under-evil')")
    row.locator(":scope > .tree-row .tree-type").click()
    page.wait_for_selector("#tree-panel h2")
    assert page.locator("#tree-panel h2").inner_text() == XSS_NAME
    page.fill("#tree-search-input", "onerror")
    page.wait_for_selector(f"#tree-search-results [data-node-id='{evil.pk}']")
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_show_more_loads_the_next_page(logged_in_page, live_server, small_tree):
    SupervisionNode.objects.bulk_create(
        SupervisionNode(
            node_id=f"e2t-many-{i:03d}", node_type="Service", node_type_detail="x", parent=small_tree["svc"]
        )
        for i in range(selectors.PAGE_SIZE + 4)
    )
    page = logged_in_page
    open_tree(page, live_server)
    svc = item(page, small_tree["svc"])
    svc.locator(":scope > .tree-row .tree-toggle").click()
    group = svc.locator(":scope > ul[role='group']")
    more = group.locator(":scope > .tree-more")
    more.wait_for()
    assert group.locator(":scope > .tree-node").count() == selectors.PAGE_SIZE
    assert more.inner_text() == "Show more (4 not shown)"
    more.click()
    page.wait_for_function(
        f"document.querySelectorAll(\"[data-node-id='{small_tree['svc'].pk}'] > ul > .tree-node\").length === "
        f"{selectors.PAGE_SIZE + 4}"
    )
    assert more.count() == 0
    names = group.locator(":scope > .tree-node > .tree-row .tree-name").all_inner_texts()
    assert names == sorted(names)


def test_status_filter_shows_matches_in_place(logged_in_page, live_server, small_tree):
    SupervisionNode.objects.filter(pk=small_tree["w2"].pk).update(status="failed")
    page = logged_in_page
    open_tree(page, live_server)
    page.select_option("select[name='status']", "failed")
    page.wait_for_url(re.compile(r".*status=failed.*"))
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    shown = page.locator("li.tree-node > .tree-row .tree-name").all_inner_texts()
    assert shown == ["e2t-root", "e2t-sup", "e2t-w2"]
    assert "tree-context" in item(page, small_tree["sup"]).get_attribute("class")
    assert "tree-context" not in item(page, small_tree["w2"]).get_attribute("class")


def test_restart_from_the_tree_comes_back_to_the_node(logged_in_page, live_server, small_tree):
    sup = small_tree["sup"]
    SupervisionPolicy.objects.create(node=sup, backoff_strategy="Fixed", min_restart_delay_ms=777)
    page = logged_in_page
    page.goto(f"{live_server.url}{reverse('supervision:tree')}")
    item(page, sup).locator(":scope > .tree-row .tree-type").click()
    page.locator("#tree-panel").get_by_role("link", name="Restart…").click()
    page.wait_for_selector("table.restart-targets")
    assert "777 ms" in page.locator("table.restart-targets").inner_text()
    page.click("input[type=submit].default")
    page.wait_for_selector("ul.messagelist li.success")
    assert f"node={sup.pk}" in page.url
    assert SupervisionRestart.objects.filter(node=sup, restart_delay_ms=777).count() == 1


def test_budget_badge_on_the_row_and_budget_line_in_the_panel(logged_in_page, live_server, small_tree):
    sup, root = small_tree["sup"], small_tree["root"]
    SupervisionPolicy.objects.create(node=sup, max_restarts=2, time_window_seconds=600)
    SupervisionFailure.objects.create(node=sup, failure_reason="Crash", failure_detail="boom")
    page = logged_in_page
    open_tree(page, live_server)
    badge = item(page, sup).locator(":scope > .tree-row .tree-budget")
    assert badge.inner_text() == "1/2"
    assert "tree-budget-last_slot" in badge.get_attribute("class")
    assert badge.get_attribute("title") == f"restart budget: one more failure escalates to {root.node_id}"
    assert item(page, small_tree["svc"]).locator(":scope > .tree-row .tree-budget").count() == 0  # no policy
    item(page, sup).locator(":scope > .tree-row .tree-type").click()
    page.wait_for_selector("#tree-panel h2:text-is('e2t-sup')")
    line = page.locator("#tree-panel .tree-budget-line")
    assert line.inner_text().startswith("1 of 2 restarts used in 600 s; next slot frees at ")
    assert line.locator("time").get_attribute("datetime")
    assert line.locator(".tree-budget-warning").inner_text() == f"; one more failure escalates to {root.node_id}"
    docs_screenshot(page.locator("#content-main"), "restart-budget")


def test_budget_filter_shows_the_nodes_one_failure_from_escalating(logged_in_page, live_server, small_tree):
    w1 = small_tree["w1"]
    SupervisionPolicy.objects.create(node=w1, max_restarts=1, time_window_seconds=600)
    SupervisionPolicy.objects.create(node=small_tree["w2"], max_restarts=5, time_window_seconds=600)
    page = logged_in_page
    open_tree(page, live_server, "?budget=escalating")
    assert page.locator("select[name='budget']").input_value() == "escalating"
    matched = page.locator("li[role='treeitem'] .tree-name").all_inner_texts()
    assert "e2t-w1" in matched and "e2t-w2" not in matched
