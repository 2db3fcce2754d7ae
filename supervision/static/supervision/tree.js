/**
 * The supervision tree page (the entry module): a lazy, keyboard-driven ARIA tree. Its parts by
 * concern: tree_render.js (how a node is drawn), tree_panel.js (the selected node's panel),
 * tree_search.js (the search box), tree_live.js (live updates); the helpers every live page
 * shares are in mistersmith/live.js.
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

import { fillUrl, getJson, h, readJson, timeText, urlState } from "../mistersmith/live.js";
import { createPanel } from "./tree_panel.js";
import { renderRow } from "./tree_render.js";
import { startSearch } from "./tree_search.js";
import { startTreeLive } from "./tree_live.js";

const config = readJson("tree-config");
const tree = document.getElementById("supervision-tree");
// The tree at a past moment (?at=): every request asks for that moment; no search, no live updates.
const past = config.at ?? null;
const atQuery = past ? `?${new URLSearchParams({ at: past })}` : "";
const panel = createPanel(document.getElementById("tree-panel"), {
  nodeUrl: (id) => urlFor(config.nodeUrl, id) + atQuery,
  beforeFailureUrl: (id, iso) => beforeFailureUrl(config.treeUrl, id, iso),
  remember: (node) => nodeData.set(node.id, node),
  fill: (template, id) => urlFor(template, id),
});
const statusLine = document.getElementById("tree-status");

const elements = new Map(); // node id -> its <li>
const nodeData = new Map(); // node id -> its latest JSON
const loading = new Map(); // node id -> the promise of its children
let matches = new Set(); // filter mode: the nodes that matched (the others are context)
let active = null; // the treeitem with tabindex 0
let selectedId = null;

function urlFor(template, id) {
  return fillUrl(template, config.placeholder, id);
}

function report(message) {
  statusLine.textContent = message;
}

// --- Drawing a node ------------------------------------------------------------------------------

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
  item.replaceChild(renderRow(node, urlFor(config.changeUrl, node.id)), item.firstElementChild);
  const group = groupOf(item);
  if (node.child_count > 0 || (group && group.childElementCount > 0)) {
    if (!item.hasAttribute("aria-expanded")) item.setAttribute("aria-expanded", "false");
  } else {
    item.removeAttribute("aria-expanded");
  }
  item.classList.toggle("tree-context", matches.size > 0 && !matches.has(node.id));
  if (node.id === selectedId) panel.redrawNode(node);
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
    const request = getJson(config.childrenUrl, { parent: id, at: past })
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
  const params = { after: more.dataset.after, at: past };
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

/**
 * Select a node and show its panel. ``history``: "push" (a person chose it: Back returns to the
 * node before; on a phone the page goes to the panel), "replace" (the page's first selection), "none" (Back or Forward brought it).
 */
function select(item, history = "push") {
  if (!item.classList.contains("tree-node")) return;
  const previous = selectedId && elements.get(selectedId);
  if (previous) previous.setAttribute("aria-selected", "false");
  item.setAttribute("aria-selected", "true");
  selectedId = item.dataset.nodeId;
  if (history !== "none") urlState.write({ node: selectedId }, history);
  panel.show(selectedId, { reveal: history === "push" });
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
async function openPath(id, history = "push") {
  let path;
  try {
    path = await getJson(urlFor(config.pathUrl, id), { at: past });
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
  select(item, history);
}

// --- Search ----------------------------------------------------------------------------------

const searchInput = document.getElementById("tree-search-input"); // absent in the past

/** Back and Forward: the search text and the selected node as the URL has them. */
urlState.onPop((query) => {
  if (searchInput) searchInput.value = query.get("find") ?? "";
  const wanted = query.get("node");
  if (wanted && wanted !== selectedId) openPath(wanted, "none");
});

if (searchInput) {
  searchInput.value = urlState.get("find"); // the text searched for last, kept in the URL
  searchInput.addEventListener("input", () => urlState.write({ find: searchInput.value }, "typing", "find"));
  startSearch({
    input: searchInput,
    list: document.getElementById("tree-search-results"),
    searchUrl: config.searchUrl,
    filters: config.filters,
    openPath,
    report,
  });
}

/** The tree five minutes before a failure of a node, compared with the failure's moment. */
function beforeFailureUrl(treeUrl, id, iso) {
  const before = new Date(Date.parse(iso) - 5 * 60 * 1000).toISOString();
  return `${treeUrl}?${new URLSearchParams({ at: before, compare: iso, node: id })}`;
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
    select(selected, "replace");
  } else if (tree.firstElementChild) {
    setActive(tree.firstElementChild, false);
  }
  document.querySelectorAll("select[data-autosubmit]").forEach((field) => {
    field.addEventListener("change", () => field.form.requestSubmit());
  });
  tree.dataset.ready = "true";
  // The moments the server wrote as ISO text, in the reader's own time zone.
  document.querySelectorAll(".tree-past-banner time, .tree-before-history time, .tree-diff h2 time").forEach((moment) => {
    moment.textContent = timeText(moment.getAttribute("datetime"));
  });
  if (past) return; // the past does not change: no live updates
  startTreeLive(config.nodesUrl, {
    shownIds: () => [...elements.keys()],
    has: (id) => elements.has(id),
    nodeOf: (id) => nodeData.get(id),
    itemOf: (id) => elements.get(id),
    renderNode,
    selectedId: () => selectedId,
    showPanel: (id) => panel.show(id),
  });
}

start();
