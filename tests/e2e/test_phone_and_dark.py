"""Phones and dark mode in Chromium: at 390 px every live page fits the screen and its wide tables
are cards (checked by element widths, with a screenshot of each page); choosing a tree node on a
phone goes to its details; highlighted rows keep a contrast of 4.5:1 or more in the admin's dark
theme, whether it comes from the system setting or from the admin's theme toggle."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from agents.models import Agent, AgentAnomaly, AgentInstance, InteractiveSession
from mistersmith.jetstream.client import connection
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode
from tests.agents.test_discoveries import payload as discovery_payload
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
MIN_CONTRAST = 4.5
DELIVERY = 15_000  # ms: a message published to the shared NATS reaching the page, on a busy machine
DARK_BODY = "rgb(18, 18, 18)"  # the admin's dark --body-bg
DARK_SELECTED_ROW = "rgb(0, 54, 58)"  # the admin's dark --selected-row

# The cells of every visible card-table row: their width, their row's inner width, their label and
# their column's heading (what the label must say).
CARD_CELLS = """() => {
  const cells = [];
  for (const table of document.querySelectorAll("table.card-table")) {
    const headings = [];
    for (const th of table.tHead ? table.tHead.rows[0].cells : []) {
      for (let i = 0; i < th.colSpan; i += 1) headings.push(th.textContent.replace(/\\s+/g, " ").trim());
    }
    for (const body of table.tBodies) {
      for (const row of body.rows) {
        if (!row.getClientRects().length) continue;
        let column = 0;
        for (const cell of row.cells) {
          if (cell.getClientRects().length) {
            cells.push({
              table: table.id || table.className,
              heading: cell.colSpan === 1 ? headings[column] || "" : "",
              label: cell.dataset.label ?? "",
              width: cell.getBoundingClientRect().width,
              rowWidth: row.clientWidth,
              right: row.getBoundingClientRect().right,
            });
          }
          column += cell.colSpan;
        }
      }
    }
  }
  return cells;
}"""

# The innermost elements that reach past the screen's right edge: what makes a page too wide.
TOO_WIDE = """(width) => [...document.querySelectorAll("body *")]
  .filter((node) => node.getBoundingClientRect().right > width + 0.5
    && ![...node.children].some((child) => child.getBoundingClientRect().right > width + 0.5))
  .slice(0, 5)
  .map((node) => `${node.tagName.toLowerCase()}#${node.id}.${[...node.classList].join(".")}: ${Math.round(node.getBoundingClientRect().right)} px`)"""

# The contrast of every piece of text inside ``element``: its colour (times the opacities above it)
# over the backgrounds of it and its ancestors, composed as the browser paints them; WCAG 2 ratio.
# With the element's own background, read in the same call (a live page may redraw the element).
CONTRASTS = """(element) => {
  const parse = (colour) => {
    const parts = colour.match(/\\(([^)]+)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, bottom) => {
    const alpha = top[3] + bottom[3] * (1 - top[3]);
    if (!alpha) return [0, 0, 0, 0];
    const mix = [0, 1, 2].map((i) => (top[i] * top[3] + bottom[i] * bottom[3] * (1 - top[3])) / alpha);
    return [...mix, alpha];
  };
  const luminance = (colour) => {
    const [r, g, b] = colour.slice(0, 3).map((value) => {
      const v = value / 255;
      return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const measure = (node) => {
    const layers = [];
    let opacity = 1;
    for (let at = node; at; at = at.parentElement) {
      const style = getComputedStyle(at);
      layers.push(parse(style.backgroundColor));
      opacity *= Number(style.opacity);
    }
    let background = [255, 255, 255, 1];
    for (const layer of layers.reverse()) background = over(layer, background);
    const colour = parse(getComputedStyle(node).color);
    const text = over([colour[0], colour[1], colour[2], colour[3] * opacity], background);
    const [light, dark] = [luminance(text), luminance(background)].sort((a, b) => b - a);
    return {
      text: [...node.childNodes].filter((child) => child.nodeType === 3).map((child) => child.textContent).join("").trim(),
      className: node.className,
      colour: getComputedStyle(node).color,
      background: `rgb(${background.slice(0, 3).map(Math.round).join(", ")})`,
      ratio: (light + 0.05) / (dark + 0.05),
    };
  };
  const found = [];
  for (const node of [element, ...element.querySelectorAll("*")]) {
    const hasText = [...node.childNodes].some((child) => child.nodeType === 3 && child.textContent.trim());
    if (hasText && node.getClientRects().length && getComputedStyle(node).visibility !== "hidden") found.push(measure(node));
  }
  return { background: getComputedStyle(element).backgroundColor, texts: found };
}"""

# Stop every "changed" flash at its first frame (the most highlighted), as soon as it starts.
FREEZE_FLASHES = """() => {
  new MutationObserver((records) => {
    for (const record of records) {
      if (!record.target.classList.contains("changed")) continue;
      for (const animation of record.target.getAnimations()) { animation.pause(); animation.currentTime = 0; }
      record.target.dataset.frozen = "true";
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["class"] });
}"""


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def screenshot_folder(tmp_path: Path) -> Path:
    """docs/img with DOCS_SCREENSHOTS=1 (the docs' pictures); otherwise a temporary folder."""
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "img"
    return tmp_path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def publish(subject: str, body: dict) -> None:
    connection().publish(subject, body, msg_id=uuid.uuid4().hex)


def live(page) -> None:
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")


def highlighted(locator) -> tuple[str, list[dict]]:
    """The element's background and the contrast of each piece of its text, read at once."""
    for _ in range(5):  # a live page may redraw the element as it is read: read the one drawn next
        expect(locator).to_be_visible()
        measured = locator.evaluate(CONTRASTS)
        if measured["texts"]:
            break
    return measured["background"], measured["texts"]


def selected_highlight(locator) -> tuple[str, list[dict]]:
    """As ``highlighted``, once a live redraw's flash (which fades the row's background) is over."""
    for _ in range(5):
        background, texts = highlighted(locator)
        if background == DARK_SELECTED_ROW:
            break
        locator.evaluate("node => Promise.all(node.getAnimations({ subtree: true }).map((a) => a.finished))")
    return background, texts


def assert_readable(found: list[dict], where: str) -> None:
    assert found, f"no text measured in {where}"
    low = [item for item in found if item["ratio"] < MIN_CONTRAST]
    assert low == [], f"{where}: text under {MIN_CONTRAST}:1: {low}"


@pytest.fixture
def phone_world(transactional_db):
    """A failed supervisor with a failure, its agent (long name, an instance, an anomaly) and a
    live session whose process is gone (a degraded row on verify_state)."""
    root = SupervisionNode.objects.create(node_id="phone-root", node_type="RootSupervisor")
    agent = Agent.objects.create(
        name="phone-agent-with-a-long-name-that-would-not-fit-a-narrow-column", status="Running"
    )
    sup = SupervisionNode.objects.create(
        node_id="phone-supervisor",
        node_type="AgentSupervisor",
        node_type_detail="detail",
        parent=root,
        status="failed",
        agent=agent,
    )
    Agent.objects.filter(pk=agent.pk).update(supervision_node=sup)
    SupervisionFailure.objects.create(
        node=sup, failure_reason="HeartbeatTimeout", failure_detail="no heartbeat for 30 s " + "x" * 80
    )
    AgentInstance.objects.create(agent=agent, status="running", host_name="worker-01.internal.example", port=7000)
    AgentAnomaly.objects.create(
        agent_id=agent.pk,
        event_kind="StateChanged",
        current_state="Running",
        attempted_state="Created",
        detail="a move the lifecycle forbids",
    )
    InteractiveSession.objects.create(agent=Agent.objects.create(name="phone-gone"), state="Ready", pid=dead_pid())
    return {"sup": sup, "agent": agent}


@pytest.fixture
def phone_page(live_page):
    errors: list[str] = []
    live_page.on("pageerror", lambda error: errors.append(str(error)))
    live_page.set_viewport_size(PHONE)
    yield live_page
    assert errors == []


def test_every_live_page_fits_a_phone_and_its_tables_are_cards(phone_page, phone_world, tmp_path):
    page = phone_page
    base = page.server.url
    agent, sup = phone_world["agent"], phone_world["sup"]
    marker = f"phone-{uuid.uuid4().hex[:8]}"

    def dashboard():
        page.goto(f"{base}/admin/live/")
        live(page)
        expect(page.locator("#panel-streams")).to_have_attribute("data-ready", "true")

    def event_log():
        page.goto(f"{base}/admin/events/")
        live(page)
        publish(f"agent.{agent.pk}.output", {"Output": {"agent_id": str(agent.pk), "content": f"{marker} " * 30}})
        expect(page.locator(f"#live-rows tr[data-subject='agent.{agent.pk}.output']").first).to_be_visible(
            timeout=DELIVERY
        )

    def agents_list():
        page.goto(f"{base}/admin/agents/live/")
        live(page)
        expect(page.locator("#agents-table")).to_have_attribute("data-ready", "true")
        expect(page.locator(f"tr[data-agent-id='{agent.pk}']")).to_be_visible()

    def agent_detail():
        page.goto(f"{base}/admin/agents/live/{agent.pk}/")
        live(page)
        page.wait_for_function("document.body.dataset.agentReady === 'true'")
        expect(page.locator("#agent-anomalies tbody tr")).to_have_count(1)
        expect(page.locator("#agent-instances tbody tr")).to_have_count(1)

    def discoveries():
        page.goto(f"{base}/admin/discoveries/?keywords={marker}")
        live(page)
        publish(f"discoveries.{marker}.patterns", discovery_payload(1, agent=marker, content=f"{marker} " + "y" * 90))
        expect(page.locator("#discovery-table tbody tr").filter(has_text=marker)).to_have_count(1, timeout=DELIVERY)

    def tree():
        page.goto(f"{base}/admin/supervision/tree/?node={sup.pk}")
        expect(page.locator("#tree-panel table tbody tr")).to_have_count(1)

    def verify_state():
        page.goto(f"{base}/admin/state/verify/")
        expect(page.locator("#verify-rows tr[data-status='degraded']").first).to_be_visible()

    pages = [dashboard, event_log, agents_list, agent_detail, discoveries, tree, verify_state]
    folder = screenshot_folder(tmp_path)
    problems: dict[str, list] = {}
    for open_page in pages:
        name = open_page.__name__
        open_page()
        page.wait_for_function("document.querySelectorAll('table.card-table td[data-label]').length > 0")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        cells = page.evaluate(CARD_CELLS)
        found = []
        if width > PHONE["width"]:
            found.append(f"the page is {width} px wide: {page.evaluate(TOO_WIDE, PHONE['width'])}")
        if not cells:
            found.append("no card cells")
        for cell in cells:
            if abs(cell["width"] - cell["rowWidth"]) > 1 or cell["right"] > PHONE["width"]:
                found.append(f"a cell is not the width of its card: {cell}")
            if cell["label"] != cell["heading"]:
                found.append(f"a cell's label is not its column's heading: {cell}")
        if found:
            problems[name] = found[:5]
        # The first card in view (the rows of a live table may be redrawn meanwhile: no locator).
        page.evaluate("document.querySelector('table.card-table td[data-label]').closest('tr').scrollIntoView()")
        shot = folder / f"phone-{name.replace('_', '-')}.png"
        page.screenshot(path=str(shot))
        assert png_size(shot) == (PHONE["width"], PHONE["height"])
    assert problems == {}


def test_choosing_a_tree_node_on_a_phone_goes_to_its_details(logged_in_page, live_server):
    page = logged_in_page
    demo.seed(prefix="phone", nodes=60, levels=3, failures=0, hive=False)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    panel = page.locator("#tree-panel")

    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/supervision/tree/")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    below = page.evaluate("document.getElementById('tree-panel').getBoundingClientRect().top - innerHeight")
    assert below > 0, "the panel should start below the screen for this test to mean anything"
    first = page.locator("li[role='treeitem']").first
    name = first.get_attribute("data-node-id")
    first.locator(":scope > .tree-row .tree-type").click()
    expect(panel.locator(f".tree-panel-node[data-node-id='{name}']")).to_be_attached()
    expect(panel).to_be_in_viewport()
    top = page.evaluate("document.getElementById('tree-panel').getBoundingClientRect().top")
    assert 0 <= top < 100  # the details start at the top of the screen

    # On a wide screen the panel sits beside the tree: choosing a node does not move the page.
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/admin/supervision/tree/")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    second = page.locator("li[role='treeitem']").nth(1)
    second.locator(":scope > .tree-row .tree-type").click()
    expect(panel.locator(f".tree-panel-node[data-node-id='{second.get_attribute('data-node-id')}']")).to_be_attached()
    assert page.evaluate("window.scrollY") == 0
    assert errors == []


@contextlib.contextmanager
def phone_in_scheme(browser, server, color_scheme: str):
    """A logged-in phone-sized page on the running console whose system setting is ``color_scheme``;
    fails on any uncaught script error."""
    context = browser.new_context(bypass_csp=True, color_scheme=color_scheme, viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, server.url)
    page.server = server
    yield page
    context.close()
    assert errors == []


@pytest.fixture
def dark_context(browser, asgi_server, admin_user):
    """A page whose system setting is dark (prefers-color-scheme)."""
    with phone_in_scheme(browser, asgi_server, "dark") as page:
        yield page


@pytest.fixture
def toggled_dark_page(browser, asgi_server, admin_user):
    """A page whose system setting is light, turned dark with the admin's own theme toggle."""
    with phone_in_scheme(browser, asgi_server, "light") as page:
        html = page.locator("html")
        for _ in range(3):
            if html.get_attribute("data-theme") == "dark":
                break
            page.locator("button.theme-toggle").first.click()
        expect(html).to_have_attribute("data-theme", "dark")
        yield page


def body_background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_dark_system_setting_flashed_stale_and_degraded_rows_stay_readable(dark_context, phone_world):
    page = dark_context
    agent = phone_world["agent"]
    page.goto(f"{page.server.url}/admin/agents/live/?state=Running")
    live(page)
    expect(page.locator("#agents-table")).to_have_attribute("data-ready", "true")
    assert body_background(page) == DARK_BODY
    page.evaluate(FREEZE_FLASHES)
    publish(
        f"agent.{agent.pk}.events",
        {"StateChanged": {"agent_id": str(agent.pk), "old_state": "Running", "new_state": "Error"}},
    )
    row = page.locator(f"tr[data-agent-id='{agent.pk}']")
    expect(row).to_have_class(re.compile(r"\bagent-stale\b"), timeout=DELIVERY)  # no longer matches the filter: marked
    flashed = row.locator("td.changed[data-frozen='true']")
    expect(flashed.locator(".agent-state")).to_have_text("Error")
    background, texts = highlighted(flashed)
    assert background == DARK_SELECTED_ROW  # the flash's first frame
    assert_readable(texts, "the flashed Error state")
    assert_readable(highlighted(row)[1], "the stale agents row")

    page.goto(f"{page.server.url}/admin/state/verify/")
    degraded = page.locator("#verify-rows tr[data-status='degraded']").first
    expect(degraded).to_be_visible()
    assert body_background(page) == DARK_BODY
    assert_readable(highlighted(degraded)[1], "a degraded verify_state row")
    assert_readable(highlighted(page.locator(".verify-summary"))[1], "verify_state's summary")


def test_admin_theme_toggle_dark_selected_tree_row_and_search_hit_stay_readable(toggled_dark_page, phone_world):
    page = toggled_dark_page
    sup = phone_world["sup"]
    page.goto(f"{page.server.url}/admin/supervision/tree/?node={sup.pk}")
    page.wait_for_selector("#supervision-tree[data-ready='true']")
    assert body_background(page) == DARK_BODY
    selected = page.locator(f"li[data-node-id='{sup.pk}'][aria-selected='true'] > .tree-row")
    expect(selected.locator(".tree-status-badge")).to_have_text("failed")
    background, texts = selected_highlight(selected)
    assert background == DARK_SELECTED_ROW
    assert_readable(texts, "the selected tree row of a failed node")
    failure = page.locator("#tree-panel table tbody tr", has_text="HeartbeatTimeout")
    assert_readable(highlighted(failure)[1], "a failure row in the panel")

    page.fill("#tree-search-input", "phone-super")
    expect(page.locator("#tree-search-results li[data-node-id]").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    hit = page.locator("#tree-search-results li[aria-selected='true']")
    expect(hit).to_have_count(1)
    background, texts = selected_highlight(hit)
    assert background == DARK_SELECTED_ROW
    assert_readable(texts, "the chosen search hit")
