/**
 * The supervision tree page: a lazy, keyboard-driven ARIA tree, a search box and a node panel.
 *
 * No build step and no innerHTML: every element is built with createElement and every value
 * goes in as text, so a node named "<script>" stays a name.
 *
 * Data arrives as *groups* ({parent, nodes, pinned, has_more, after, filtered}): the page's
 * own JSON, then the children, path and search endpoints. Each node is drawn by renderNode(),
 * which can be applied again to the same node whenever newer data for it arrives, so live
 * updates can later reuse it as is. Siblings come sorted by the server (the database's
 * order, as get_supervision_tree sorts); this file never sorts.
 */

import { getJson, h, readJson, startLive } from "../mistersmith/live.js";

const config = readJson("tree-config");
const tree = document.getElementById("supervision-tree");
const panel = document.getElementById("tree-panel");
const statusLine = document.getElementById("tree-status");
const searchInput = document.getElementById("tree-search-input");
const searchResults = document.getElementById("tree-search-results");

const elements = new Map(); // node id -> its <li>
const nodeData = new Map(); // node id -> its latest JSON
const loading = new Map(); // node id -> the promise of its children
let matches = new Set(); // filter mode: the nodes that matched (the others are context)
let active = null; // the treeitem with tabindex 0
let selectedId = null;

function urlFor(template, id) {
  return template.replace(config.placeholder, encodeURIComponent(id));
}


function report(message) {
  statusLine.textContent = message;
}

// --- Drawing a node ------------------------------------------------------------------------------

function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function timeElement(iso) {
  return h("time", { datetime: iso, title: iso }, formatTime(iso));
}

function typeText(node) {
  return node.detail ? `${node.type} · ${node.detail}` : node.type;
}

/** Status as text and colour: the word is always there, the colour only repeats it. */
function statusBadge(status) {
  return h("span", { className: `tree-status-badge tree-status-${status}` }, status);
}

function policySummary(policy) {
  if (!policy) return "no policy";
  if (policy.hidden) return "a policy (hidden: you may not view supervision policies)";
  const factor = policy.backoff === "Exponential" && policy.backoff_factor ? ` ×${policy.backoff_factor}` : "";
  return (
    `${policy.strategy}, max ${policy.max_restarts} restarts / ${policy.window_seconds} s, ` +
    `${policy.backoff}${factor} ${policy.min_delay_ms}–${policy.max_delay_ms} ms`
  );
}

function failuresInWindow(node) {
  if (!node.policy) return h("span", {}, "– (no policy window)");
  if (node.policy.hidden) return h("span", {}, `${node.failures_in_window} in the policy's window`);
  const text = `${node.failures_in_window} of ${node.policy.max_restarts} in ${node.policy.window_seconds} s`;
  if (node.restart_allowed) return h("span", {}, text);
  return h("span", { className: "tree-alert" }, `${text}, restart limit reached`);
}

function restartsText(node) {
  return node.restarts_capped ? `${node.restarts}+` : String(node.restarts);
}

/** The child nodes the tree lists under this node, by status: the counts add up to the children shown. */
function childrenText(node) {
  const statuses = Object.entries(node.child_statuses ?? {})
    .filter(([, count]) => count > 0)
    .map(([status, count]) => `${status} ${count}`);
  const children = node.child_count === 1 ? "1 child" : `${node.child_count} children`;
  return statuses.length ? `${children} (${statuses.join(", ")})` : children;
}

/** The runtime's child-state rows (supervision_child_states), another set than the child nodes. */
function childStatesText(node) {
  const states = Object.entries(node.child_states)
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${state} ${count}`);
  return states.length ? states.join(", ") : "none";
}

function fact(label, ...value) {
  return h("span", { className: "tree-fact" }, h("span", { className: "tree-fact-label" }, `${label}: `), ...value);
}

function renderRow(node) {
  return h(
    "div",
    { className: "tree-row" },
    h("span", { className: "tree-toggle", "aria-hidden": "true" }),
    h(
      "span",
      { className: "tree-title" },
      h("a", { className: "tree-name", href: urlFor(config.changeUrl, node.id), tabindex: "-1" }, node.name),
      h("span", { className: "tree-type" }, typeText(node)),
      statusBadge(node.status),
      node.agent ? h("span", { className: "tree-agent" }, `agent ${node.agent.name ?? node.agent.id}`) : null,
    ),
    h(
      "span",
      { className: "tree-facts" },
      fact("policy", policySummary(node.policy)),
      fact("failures in window", failuresInWindow(node)),
      fact("restarts", restartsText(node)),
      fact("last failure", node.last_failure_at ? timeElement(node.last_failure_at) : "none"),
      fact("children", childrenText(node)),
      fact("child states", childStatesText(node)),
    ),
  );
}

/**
 * Draw one node from its JSON, creating its <li> on first sight and redrawing it in place after:
 * its children, expanded state, focus and selection stay as they are.
 */
export function renderNode(node) {
  nodeData.set(node.id, node);
  let item = elements.get(node.id);
  if (!item) {
    item = h("li", {
      role: "treeitem",
      className: "tree-node",
      tabindex: "-1",
      "aria-selected": "false",
      "data-node-id": node.id,
    });
    item.append(h("div"));
    elements.set(node.id, item);
  }
  item.replaceChild(renderRow(node), item.firstElementChild);
  const group = groupOf(item);
  if (node.child_count > 0 || (group && group.childElementCount > 0)) {
    if (!item.hasAttribute("aria-expanded")) item.setAttribute("aria-expanded", "false");
  } else {
    item.removeAttribute("aria-expanded");
  }
  item.classList.toggle("tree-context", matches.size > 0 && !matches.has(node.id));
  if (node.id === selectedId) renderPanelNode(node);
  return item;
}

// --- Groups: placing pages of nodes --------------------------------------------------------------

function groupOf(item, create = false) {
  let group = item.querySelector(":scope > ul[role='group']");
  if (!group && create) {
    group = h("ul", { role: "group", hidden: true });
    item.append(group);
  }
  return group;
}

function containerFor(parentId) {
  if (parentId === null) return tree;
  const item = elements.get(parentId);
  return item ? groupOf(item, true) : null;
}

function parentItem(item) {
  const container = item.parentElement;
  return container === tree ? null : container.parentElement;
}

function moreItem() {
  return h("li", { role: "treeitem", className: "tree-more", tabindex: "-1" }, h("span", {}, "Show more…"));
}

/**
 * Place a group's nodes in their parent's list, in the server's order, reusing the elements of
 * nodes already shown. A page continues where the "show more" item stands; pinned nodes (the
 * path to a deep-linked node, past the loaded pages) wait after it until their page arrives.
 * With onlyMissing, a list already loaded only gains the nodes it lacks (opening a path).
 */
function applyGroup(group, { onlyMissing = false } = {}) {
  const container = containerFor(group.parent);
  if (!container) return;
  if (onlyMissing && container.dataset.loaded === "true") {
    for (const node of [...group.nodes, ...group.pinned]) {
      const item = renderNode(node);
      if (!item.parentElement) container.append(item);
    }
  } else {
    placePage(container, group);
  }
  container.dataset.loaded = "true";
  if (group.filtered) container.dataset.filtered = "true";
  renumber(container);
}

function placePage(container, group) {
  let more = container.querySelector(":scope > .tree-more");
  let cursor = group.after ? more : container.firstElementChild;
  for (const node of group.nodes) {
    const item = renderNode(node);
    if (item === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(item, cursor);
  }
  if (group.has_more) {
    more ??= moreItem();
    more.dataset.after = group.nodes.at(-1)?.name ?? group.after ?? "";
    if (more !== cursor) container.insertBefore(more, cursor);
  } else if (more) {
    if (active === more) active = null;
    more.remove();
  }
  for (const node of group.pinned) {
    const item = renderNode(node);
    if (!item.parentElement) container.append(item);
  }
}

/** aria-level, aria-setsize and aria-posinset of a list's items, and its "show more" label. */
function renumber(container) {
  const owner = container === tree ? null : container.parentElement;
  const level = owner ? Number(owner.getAttribute("aria-level")) + 1 : 1;
  const items = [...container.children].filter((item) => item.classList.contains("tree-node"));
  const known = owner && container.dataset.filtered !== "true" ? nodeData.get(owner.dataset.nodeId)?.child_count : 0;
  const total = Math.max(known ?? 0, items.length);
  items.forEach((item, index) => {
    item.setAttribute("aria-level", level);
    item.setAttribute("aria-setsize", total);
    item.setAttribute("aria-posinset", index + 1);
  });
  const more = container.querySelector(":scope > .tree-more");
  if (more) {
    more.setAttribute("aria-level", level);
    more.firstElementChild.textContent = owner ? `Show more (${total - items.length} not shown)` : "Show more roots";
  }
}

// --- Expanding, collapsing, loading --------------------------------------------------------------

function isExpanded(item) {
  return item.getAttribute("aria-expanded") === "true";
}

function loadChildren(item) {
  const id = item.dataset.nodeId;
  if (!loading.has(id)) {
    item.setAttribute("aria-busy", "true");
    const request = getJson(config.childrenUrl, { parent: id })
      .then((page) => page.groups.forEach((group) => applyGroup(group)))
      .finally(() => {
        item.removeAttribute("aria-busy");
        loading.delete(id);
      });
    loading.set(id, request);
  }
  return loading.get(id);
}

async function expand(item) {
  if (!item.hasAttribute("aria-expanded") || isExpanded(item)) return;
  const group = groupOf(item, true);
  if (group.dataset.loaded !== "true") {
    try {
      await loadChildren(item);
    } catch (error) {
      report(`Could not load the children: ${error.message}.`);
      return;
    }
  }
  group.hidden = false;
  item.setAttribute("aria-expanded", "true");
}

function collapse(item) {
  if (!isExpanded(item)) return;
  groupOf(item).hidden = true;
  item.setAttribute("aria-expanded", "false");
  if (active && item.contains(active) && active !== item) setActive(item);
}

async function loadMore(more) {
  const container = more.parentElement;
  const owner = container === tree ? null : container.parentElement;
  const before = more.previousElementSibling;
  const params = { after: more.dataset.after };
  if (owner) params.parent = owner.dataset.nodeId;
  try {
    const page = await getJson(config.childrenUrl, params);
    const parent = owner ? owner.dataset.nodeId : null;
    page.groups.forEach((group) => applyGroup({ ...group, parent }));
  } catch (error) {
    report(`Could not load more nodes: ${error.message}.`);
    return;
  }
  const first = before ? before.nextElementSibling : container.firstElementChild;
  if (first) setActive(first);
}

// --- Focus, selection, keyboard ------------------------------------------------------------------

/** Roving tabindex: the one item Tab reaches is the one last focused. */
function setActive(item, focus = true, block = "nearest") {
  if (active && active !== item) active.setAttribute("tabindex", "-1");
  active = item;
  item.setAttribute("tabindex", "0");
  if (focus) {
    item.focus({ preventScroll: true });
    item.firstElementChild.scrollIntoView({ block });
  }
}

function select(item) {
  if (!item.classList.contains("tree-node")) return;
  const previous = selectedId && elements.get(selectedId);
  if (previous) previous.setAttribute("aria-selected", "false");
  item.setAttribute("aria-selected", "true");
  selectedId = item.dataset.nodeId;
  const url = new URL(window.location.href);
  url.searchParams.set("node", selectedId);
  window.history.replaceState(null, "", url);
  showPanel(selectedId);
}

function activate(item) {
  if (item.classList.contains("tree-more")) loadMore(item);
  else select(item);
}

function visibleChildren(item) {
  if (!isExpanded(item)) return null;
  const group = groupOf(item);
  return group && !group.hidden && group.firstElementChild ? group : null;
}

function nextVisible(item) {
  const group = visibleChildren(item);
  if (group) return group.firstElementChild;
  for (let current = item; current; current = parentItem(current)) {
    if (current.nextElementSibling) return current.nextElementSibling;
  }
  return null;
}

function lastVisibleWithin(item) {
  let last = item;
  for (let group = visibleChildren(last); group; group = visibleChildren(last)) last = group.lastElementChild;
  return last;
}

function previousVisible(item) {
  const previous = item.previousElementSibling;
  return previous ? lastVisibleWithin(previous) : parentItem(item);
}

async function right(item) {
  if (!item.hasAttribute("aria-expanded")) return;
  if (!isExpanded(item)) await expand(item);
  else if (visibleChildren(item)) setActive(visibleChildren(item).firstElementChild);
}

function left(item) {
  if (isExpanded(item)) collapse(item);
  else if (parentItem(item)) setActive(parentItem(item));
}

function toggle(item) {
  if (isExpanded(item)) collapse(item);
  else expand(item);
}

const KEYS = {
  ArrowDown: (item) => nextVisible(item) && setActive(nextVisible(item)),
  ArrowUp: (item) => previousVisible(item) && setActive(previousVisible(item)),
  ArrowRight: right,
  ArrowLeft: left,
  Home: () => tree.firstElementChild && setActive(tree.firstElementChild),
  End: () => tree.lastElementChild && setActive(lastVisibleWithin(tree.lastElementChild)),
  Enter: activate,
  " ": activate,
};

tree.addEventListener("keydown", (event) => {
  const handler = KEYS[event.key];
  const item = event.target.closest("[role='treeitem']");
  if (!handler || !item || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  handler(item);
});

tree.addEventListener("click", (event) => {
  const item = event.target.closest("[role='treeitem']");
  if (!item || event.target.closest("a")) return; // the name link goes to the admin page
  setActive(item);
  if (item.classList.contains("tree-more")) loadMore(item);
  else if (event.target.closest(".tree-toggle")) toggle(item);
  else select(item);
});

// --- Opening the path to a node ------------------------------------------------------------------

/** Load what is missing on the way to a node, expand its ancestors, focus and select it. */
async function openPath(id) {
  let path;
  try {
    path = await getJson(urlFor(config.pathUrl, id));
  } catch (error) {
    report(`Could not open that node: ${error.message}.`);
    return;
  }
  path.groups.forEach((group) => applyGroup(group, { onlyMissing: true }));
  for (const ancestor of path.open) {
    if (elements.has(ancestor)) await expand(elements.get(ancestor));
  }
  const item = elements.get(path.selected);
  if (!item) return;
  setActive(item, true, "center");
  select(item);
}

// --- Search --------------------------------------------------------------------------------------

let searchTimer = null;
let searchTicket = 0;
let searchedFor = null;
let results = [];
let activeOption = -1;

async function runSearch() {
  clearTimeout(searchTimer);
  const text = searchInput.value.trim();
  const ticket = ++searchTicket;
  searchedFor = text;
  if (!text) {
    closeResults();
    return;
  }
  try {
    const answer = await getJson(config.searchUrl, { q: text, ...config.filters });
    if (ticket === searchTicket) showResults(answer.results);
  } catch (error) {
    report(`Search failed: ${error.message}.`);
  }
}

function showResults(found) {
  results = found;
  activeOption = -1;
  searchInput.removeAttribute("aria-activedescendant");
  const options = found.map((result, index) =>
    h(
      "li",
      { role: "option", id: `tree-search-option-${index}`, "aria-selected": "false", "data-node-id": result.id },
      h("span", { className: "tree-search-name" }, result.name),
      " ",
      statusBadge(result.status),
      " ",
      h("span", { className: "tree-type" }, typeText(result)),
      h("span", { className: "tree-search-path" }, (result.path ?? []).join(" › ")),
    ),
  );
  if (!options.length) options.push(h("li", { className: "tree-search-none", role: "option", "aria-disabled": "true" }, "No node matches."));
  searchResults.replaceChildren(...options);
  searchResults.hidden = false;
  searchInput.setAttribute("aria-expanded", "true");
}

function closeResults() {
  searchResults.hidden = true;
  searchInput.setAttribute("aria-expanded", "false");
  searchInput.removeAttribute("aria-activedescendant");
}

function moveOption(step) {
  if (!results.length) return;
  activeOption = (activeOption + step + results.length) % results.length;
  searchResults.querySelectorAll("[role='option']").forEach((option, index) => {
    option.setAttribute("aria-selected", index === activeOption ? "true" : "false");
  });
  searchInput.setAttribute("aria-activedescendant", `tree-search-option-${activeOption}`);
}

async function chooseOption() {
  if (searchedFor !== searchInput.value.trim()) await runSearch();
  const choice = results[Math.max(activeOption, 0)];
  if (!choice) return;
  closeResults();
  await openPath(choice.id);
}

searchInput.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 200);
});

searchInput.addEventListener("keydown", (event) => {
  const actions = {
    ArrowDown: () => moveOption(1),
    ArrowUp: () => moveOption(-1),
    Enter: chooseOption,
    Escape: closeResults,
  };
  if (!actions[event.key]) return;
  event.preventDefault();
  actions[event.key]();
});

searchResults.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus in the box
searchResults.addEventListener("click", (event) => {
  const option = event.target.closest("[data-node-id]");
  if (!option) return;
  closeResults();
  openPath(option.dataset.nodeId);
});

searchInput.addEventListener("blur", () => setTimeout(closeResults, 150));

// --- The panel -----------------------------------------------------------------------------------

let panelTicket = 0;

async function showPanel(id) {
  const ticket = ++panelTicket;
  panel.setAttribute("aria-busy", "true");
  try {
    const details = await getJson(urlFor(config.nodeUrl, id));
    if (ticket === panelTicket) renderPanel(details);
  } catch (error) {
    if (ticket === panelTicket) panel.replaceChildren(h("p", { className: "errornote" }, `Could not load the node: ${error.message}.`));
  } finally {
    if (ticket === panelTicket) panel.removeAttribute("aria-busy");
  }
}

function link(href, text, className = null) {
  return href ? h("a", { href, className }, text) : null;
}

function section(title, ...content) {
  return h("section", { className: "tree-panel-section" }, h("h3", {}, title), ...content);
}

function table(headings, rows, empty) {
  if (!rows.length) return h("p", { className: "tree-quiet" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, heading)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
  );
}

function yesNo(value) {
  if (value === null || value === undefined) return "pending";
  return value ? "yes" : "no";
}

function details(node) {
  const entries = [
    ["Type", typeText(node)],
    ["Status", statusBadge(node.status)],
    ["Agent", node.agent ? (node.agent.name ?? node.agent.id) : "none"],
    ["Children", childrenText(node)],
    ["Child states", childStatesText(node)],
    ["Failures in window", failuresInWindow(node)],
    ["Restarts", restartsText(node)],
    ["Last failure", node.last_failure_at ? timeElement(node.last_failure_at) : "none"],
    ["Updated", timeElement(node.updated_at)],
  ];
  if (node.terminated_at) entries.push(["Terminated", timeElement(node.terminated_at)]);
  return h("dl", { className: "tree-details" }, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** The parts of the panel drawn from the node's own JSON (redrawn when the node is). */
function renderPanelNode(node) {
  const target = panel.querySelector(".tree-panel-node");
  if (!target || target.dataset.nodeId !== node.id) return;
  target.replaceChildren(h("h2", {}, node.name), details(node));
}

function renderPanel({ node, failures, restarts, child_states: childStates, links, hidden = {} }) {
  nodeData.set(node.id, node);
  const nodePart = h("div", { className: "tree-panel-node", "data-node-id": node.id });
  const policyLinkText = node.policy ? "Change the policy" : "Add a policy";
  panel.replaceChildren(
    nodePart,
    section(
      "Actions",
      h(
        "ul",
        { className: "tree-actions" },
        h("li", {}, link(links.change, "Change this node in the admin")),
        links.restart ? h("li", {}, link(links.restart, "Restart…", "tree-restart")) : null,
        h("li", {}, link(links.tree, "Link to this node in the tree")),
      ),
    ),
    section("Policy", h("p", {}, policySummary(node.policy)), h("p", {}, link(links.policy, policyLinkText))),
    section(
      "Child states",
      table(
        ["Child", "State", "Last heartbeat", "Errors", "Restarts"],
        childStates.map((child) => [
          child.child_id,
          child.state,
          child.last_heartbeat ? timeElement(child.last_heartbeat) : "never",
          String(child.error_count),
          String(child.restart_count),
        ]),
        hidden.child_states || "No child states recorded.",
      ),
    ),
    section(
      "Recent failures",
      table(
        ["When", "Reason", "Detail", "Restart attempted", "Escalated"],
        failures.map((failure) => [
          timeElement(failure.occurred_at),
          failure.failure_reason,
          failure.failure_detail,
          yesNo(failure.restart_attempted),
          yesNo(failure.escalated_to_parent),
        ]),
        hidden.failures || "No failures recorded.",
      ),
      h("p", {}, link(links.failures, "All failures of this node")),
    ),
    section(
      "Recent restarts",
      table(
        ["Started", "Attempt", "Delay", "Completed", "Success", "Error"],
        restarts.map((restart) => [
          timeElement(restart.started_at),
          String(restart.restart_attempt_number),
          `${restart.restart_delay_ms} ms`,
          restart.completed_at ? timeElement(restart.completed_at) : "–",
          yesNo(restart.success),
          restart.error_message ?? "",
        ]),
        hidden.restarts || "No restarts recorded.",
      ),
      h("p", {}, link(links.restarts, "All restarts of this node")),
    ),
  );
  renderPanelNode(node);
}

// --- Start ---------------------------------------------------------------------------------------

function start() {
  const initial = readJson("tree-data");
  matches = new Set(initial.matches);
  initial.groups.forEach((group) => applyGroup(group));
  for (const group of initial.groups) {
    const owner = group.parent && elements.get(group.parent);
    if (owner && groupOf(owner)?.childElementCount) {
      groupOf(owner).hidden = false;
      owner.setAttribute("aria-expanded", "true");
    }
  }
  tree.dataset.loaded = "true";
  document.querySelector(".tree-empty").hidden = tree.childElementCount > 0;
  const selected = initial.selected && elements.get(initial.selected);
  if (selected) {
    setActive(selected, true, "center");
    select(selected);
  } else if (tree.firstElementChild) {
    setActive(tree.firstElementChild, false);
  }
  document.querySelectorAll("select[data-autosubmit]").forEach((field) => {
    field.addEventListener("change", () => field.form.requestSubmit());
  });
  tree.dataset.ready = "true";
  startLive({ topics: ["supervision"], loadSnapshot: refreshShownNodes, applyEvents: queueRefresh });
}

// --- Live: events name nodes (or agents of nodes); their rows are fetched again and redrawn ------

const REFRESH_DELAY_MS = 150; // events of one burst become one request
const REFRESH_CHUNK = 500; // the server's limit per request
const staleNodes = new Set();
const staleAgents = new Set();
let refreshTimer = null;

function queueRefresh(topic, events) {
  for (const event of events) {
    if (event.node_id) staleNodes.add(event.node_id);
    if (event.agent_id) staleAgents.add(event.agent_id);
    if (event.supervisor_id) staleNodes.add(event.supervisor_id);
  }
  scheduleRefresh();
}

function scheduleRefresh() {
  if (refreshTimer === null && (staleNodes.size || staleAgents.size)) {
    refreshTimer = setTimeout(refreshStale, REFRESH_DELAY_MS);
  }
}

async function refreshStale() {
  refreshTimer = null;
  const drawn = [...staleNodes].filter((id) => elements.has(id)); // nodes not on this page need nothing
  const nodes = drawn.slice(0, REFRESH_CHUNK);
  const agents = [...staleAgents].slice(0, REFRESH_CHUNK);
  staleNodes.clear();
  drawn.slice(REFRESH_CHUNK).forEach((id) => staleNodes.add(id)); // the rest: the next request
  agents.forEach((id) => staleAgents.delete(id));
  if (nodes.length || agents.length) await redraw(nodes, agents);
  if (staleNodes.size || staleAgents.size) refreshTimer = setTimeout(refreshStale, REFRESH_DELAY_MS);
}

async function redraw(nodeIds, agentIds = []) {
  const answer = await getJson(config.nodesUrl, { ids: nodeIds.join(","), agents: agentIds.join(",") });
  for (const node of answer.nodes) {
    if (elements.has(node.id)) {
      const before = nodeData.get(node.id);
      renderNode(node);
      // The parent's summary counts its children by status: redraw it too when this one's moved.
      if (before && before.status !== node.status && node.parent_id && elements.has(node.parent_id)) {
        staleNodes.add(node.parent_id);
        scheduleRefresh();
      }
      const item = elements.get(node.id);
      item.classList.remove("tree-updated");
      void item.offsetWidth; // restart the highlight animation
      item.classList.add("tree-updated");
    }
  }
  if (selectedId && nodeIds.includes(selectedId)) showPanel(selectedId);
  return answer;
}

/** The snapshot of a live tree is the nodes it shows, fetched again (after every reconnect too). */
async function refreshShownNodes() {
  const ids = [...elements.keys()];
  let positions = {};
  for (let index = 0; index < ids.length || index === 0; index += REFRESH_CHUNK) {
    const answer = await redraw(ids.slice(index, index + REFRESH_CHUNK));
    positions = answer.positions;
  }
  return { positions };
}

start();
