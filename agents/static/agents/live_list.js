/**
 * The live agents list: a page of agents from the snapshot, kept up to date from the "agents" topic.
 *
 * Rows change in place: the state (badge, uptime) when the bridge applied a move, the last heartbeat
 * when a newer one arrives. A row whose new state no longer matches the state filter stays, dimmed,
 * until the next load. A newly Spawned agent is not inserted (its name, and so its place in the
 * name order, is not in the event): when it may match the filter, "N new agents — reload" says so.
 * No value is ever parsed as HTML: everything goes through h() and textContent.
 */
import { ago, flash, getJson, h, readJson, startLive } from "../mistersmith/live.js";
import { appliedState, newer, nextUpSince, orDash, since, stateBadge, urlFor, yesNo } from "./agents_common.js";

const config = readJson("agents-config");
const urls = config.urls;
const table = document.getElementById("agents-table");
const tbody = table.querySelector("tbody");
const summary = document.getElementById("agents-summary");
const empty = document.getElementById("agents-empty");
const pager = document.getElementById("agents-pager");
const errorLine = document.getElementById("agents-error");
const newLine = document.getElementById("agents-new");
const newLink = document.getElementById("agents-new-link");

const rows = new Map(); // agent id -> {agent, tr, cells}
const newAgents = new Set(); // ids of spawned agents not on this page
const selected = new Set(); // ids ticked for a bulk action (kept across snapshot reloads)
let filters = {};
let commandMarks = {}; // agent id -> its newest command of the last 30 min (the snapshot's "commands")

function cell(className, ...children) {
  return h("td", { className }, ...children);
}

const ACTIVE = new Set(["Running", "Idle", "Processing"]);

/** Silent (agents/silence.py): active, and last heard from (heartbeat, else state change) too long ago. */
function isSilent(agent, now = Date.now()) {
  const heard = agent.last_heartbeat || agent.state_changed_at;
  return ACTIVE.has(agent.status) && Boolean(heard) && now - Date.parse(heard) > config.silentSeconds * 1000;
}

/** The row's "silent" mark follows the agent: set past the threshold, cleared by a heartbeat or a move. */
function markSilence(row, now = Date.now()) {
  const silent = isSilent(row.agent, now);
  if (row.tr.hasAttribute("data-silent") === silent) return;
  row.tr.toggleAttribute("data-silent", silent);
  row.cells.silence.hidden = !silent;
}

/** The row's mark for its newest command: what was asked and how it ended (a bulk run's links to the run). */
function commandMark(mark) {
  if (!mark) return null;
  const words = { ok: "done", refused: "refused", timeout: "no answer", error: "failed", unavailable: "unavailable" };
  const text = `${mark.command}: ${words[mark.outcome] || mark.outcome}`;
  const title = `${mark.by || "someone"}, ${new Date(mark.at).toLocaleString()}: ${mark.detail}`;
  const attributes = { className: "agent-command-mark action-mark", "data-outcome": mark.outcome, title };
  if (mark.bulk_run) return h("a", { ...attributes, href: urlFor(urls, "bulkRun", mark.bulk_run) }, text);
  return h("span", attributes, text);
}

function selectCell(agent) {
  const box = h("input", { type: "checkbox", name: "agent", value: agent.id, form: "agent-bulk", "aria-label": `Select ${agent.name}` });
  box.checked = selected.has(agent.id);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(agent.id);
    else selected.delete(agent.id);
    showSelection();
  });
  return h("td", { className: "agent-select" }, box);
}

function showSelection() {
  const count = document.getElementById("agent-bulk-count");
  if (!count) return;
  count.textContent = String(selected.size);
  document.getElementById("agent-bulk-selected").disabled = selected.size === 0;
}

function renderRow(agent) {
  const cells = {
    silence: h(
      "span",
      { className: "agent-silent-mark", title: `No heartbeat or event for more than ${config.silentSeconds} s` },
      "silent",
    ),
    state: cell("agent-state-cell", stateBadge(agent.status)),
    uptime: cell("agent-uptime", since(agent.up_since)),
    heartbeat: cell("agent-heartbeat", ago(agent.last_heartbeat)),
  };
  cells.heartbeat.title = agent.last_heartbeat || "no heartbeat yet";
  const node = agent.node
    ? h("a", { href: urlFor(urls, "node", agent.node.id), title: `Node ${agent.node.status}` }, agent.node.name)
    : "—";
  const c = agent.config;
  const tr = h(
    "tr",
    { "data-agent-id": agent.id },
    config.mayCommand ? selectCell(agent) : null,
    cell(
      "agent-name",
      h("a", { href: urlFor(urls, "detail", agent.id) }, agent.name),
      " ",
      cells.silence,
      " ",
      commandMark(commandMarks[agent.id]),
    ),
    cells.state,
    cells.uptime,
    cells.heartbeat,
    cell("agent-model", c.model),
    cell("agent-max-turns", orDash(c.max_turns)),
    cell("agent-timeout", c.timeout_seconds ? `${c.timeout_seconds} s` : "—"),
    cell("agent-memory", c.memory_limit_mb ? `${c.memory_limit_mb} MB` : "—"),
    cell("agent-mcp", yesNo(c.enable_mcp)),
    cell("agent-node", node),
    cell(
      "agent-links",
      h("a", { href: urlFor(urls, "detail", agent.id) }, "Live"),
      " · ",
      h("a", { href: urlFor(urls, "admin", agent.id) }, "Admin"),
    ),
  );
  const row = { agent: { ...agent }, tr, cells };
  cells.silence.hidden = true;
  markSilence(row);
  rows.set(agent.id, row);
  return tr;
}

function pageLink(label, params, rel) {
  const query = new URLSearchParams({ ...filters, ...params }).toString();
  return h("a", { href: query ? `${urls.list}?${query}` : urls.list, rel }, label);
}

function render(snapshot) {
  filters = snapshot.filters || {};
  commandMarks = snapshot.commands || {};
  rows.clear();
  tbody.replaceChildren(...snapshot.agents.map(renderRow));
  for (const id of [...newAgents]) if (rows.has(id)) newAgents.delete(id);
  showNew();
  empty.hidden = snapshot.agents.length > 0;
  const total = `${snapshot.total_is_estimate ? "about " : ""}${snapshot.total.toLocaleString()}`;
  summary.textContent = `${snapshot.agents.length} shown of ${total} agent${snapshot.total === 1 ? "" : "s"}, by name.`;
  const links = [];
  if (!snapshot.first_page) links.push(pageLink("« First", {}, "first"));
  if (snapshot.previous) links.push(pageLink("‹ Previous", { before: snapshot.previous }, "prev"));
  if (snapshot.next) links.push(pageLink("Next ›", { after: snapshot.next }, "next"));
  pager.replaceChildren(...links);
  errorLine.hidden = true;
  for (const id of [...selected]) if (!rows.has(id)) selected.delete(id); // ticked rows no longer shown
  showSelection();
  table.dataset.ready = "true";
}

function showNew() {
  newLine.hidden = newAgents.size === 0;
  newLink.textContent = `${newAgents.size} new agent${newAgents.size === 1 ? "" : "s"} — reload`;
  newLink.href = location.href;
}

/** Could a freshly spawned agent (Running: the runtime sends Spawned after the spawn succeeded) be in this list's filter? */
function spawnMayMatch() {
  return !filters.state || filters.state === "Running";
}

function applyEvent(event) {
  const row = rows.get(event.agent_id);
  if (event.kind === "Spawned") {
    if (!row && event.result === "spawned" && spawnMayMatch()) {
      newAgents.add(event.agent_id);
      showNew();
    }
    return;
  }
  if (!row) return;
  if (event.kind === "Heartbeat" && event.at) {
    const latest = newer(row.agent.last_heartbeat, event.at);
    if (latest !== row.agent.last_heartbeat) {
      row.agent.last_heartbeat = latest;
      row.cells.heartbeat.textContent = ago(latest);
      row.cells.heartbeat.title = latest;
      markSilence(row);
    }
    return;
  }
  const state = appliedState(event);
  if (!state || state === row.agent.status) return;
  row.agent.up_since = nextUpSince(row.agent, state, event.at);
  row.agent.status = state;
  row.agent.state_changed_at = event.at || new Date().toISOString();
  markSilence(row);
  row.cells.state.replaceChildren(stateBadge(state));
  row.cells.uptime.textContent = since(row.agent.up_since);
  flash(row.cells.state);
  const stale = Boolean(filters.state) && state !== filters.state;
  row.tr.classList.toggle("agent-stale", stale);
  row.tr.title = stale ? `Now ${state}: no longer matches the filter (reload to update the list)` : "";
}

function tick() {
  const now = Date.now();
  for (const row of rows.values()) {
    row.cells.uptime.textContent = since(row.agent.up_since, now);
    row.cells.heartbeat.textContent = ago(row.agent.last_heartbeat, now);
    markSilence(row, now);
  }
}

const selectAll = document.getElementById("agent-select-all");
if (selectAll) {
  selectAll.addEventListener("change", () => {
    for (const [id, row] of rows) {
      const box = row.tr.querySelector(".agent-select input");
      box.checked = selectAll.checked;
      if (selectAll.checked) selected.add(id);
      else selected.delete(id);
    }
    showSelection();
  });
}

// A bulk run of this user moved on (mistersmith/actions.js): the rows' command marks are read again.
let bulkProgress = "";
window.addEventListener("mistersmith:actions", (event) => {
  const progress = JSON.stringify((event.detail.bulk || []).map((run) => [run.id, run.counts]));
  if (progress === bulkProgress) return;
  const first = bulkProgress === "";
  bulkProgress = progress;
  if (!first && live.socket) live.reloadSnapshot(live.socket);
});

const live = startLive({
  topics: ["agents"],
  loadSnapshot: async () => {
    try {
      const snapshot = await getJson(urls.listSnapshot, config.query);
      render(snapshot);
      return snapshot;
    } catch (error) {
      errorLine.textContent = `The agents could not be loaded: ${error.message}`;
      errorLine.hidden = false;
      throw error;
    }
  },
  applyEvents: (topic, events) => {
    for (const event of events) applyEvent(event);
  },
});
setInterval(tick, 1000);
