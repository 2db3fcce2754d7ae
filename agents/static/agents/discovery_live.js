/**
 * The discoveries live page: the snapshot of the newest matching discoveries, then new ones
 * pushed by the server with the same filter (it filters, so a narrow filter costs no traffic).
 */
import { agentLinks, getJson, h, readJson, startLive } from "../mistersmith/live.js";
import { longText } from "./agents_common.js";

const KEEP = 100;
const agentLinkTemplates = readJson("discovery-agent-links"); // null: the user may not view agents
const form = document.getElementById("discovery-filter");
const body = document.querySelector("#discovery-table tbody");
const statsLine = document.getElementById("discovery-stats");
const empty = document.getElementById("discovery-empty");
const errorNote = document.getElementById("discovery-error");
const CAPACITY = Number(form.dataset.capacity) || 1000;
let matching = 0;

/** The filter as the server takes it: comma-separated lists, empty fields left out. */
function currentFilter() {
  const data = new FormData(form);
  const filter = {};
  const types = data.getAll("types");
  if (types.length) filter.types = types.join(",");
  for (const name of ["agent_roles", "min_confidence", "keywords", "subscriber"]) {
    const value = String(data.get(name) || "").trim();
    if (value) filter[name] = value;
  }
  return filter;
}

function row(discovery) {
  const confidence = Number(discovery.confidence);
  return h(
    "tr",
    { className: "discovery-row", "data-type": discovery.discovery_type },
    h("td", {}, h("time", { datetime: discovery.timestamp }, new Date(discovery.timestamp).toLocaleString())),
    h("td", {}, discovery.discovery_type),
    h("td", {}, h("code", {}, agentLinks(discovery.agent_id, agentLinkTemplates))),
    h("td", {}, discovery.agent_role),
    h("td", {}, Number.isFinite(confidence) ? confidence.toFixed(2) : "?"),
    h("td", { className: "discovery-content" }, longText(discovery.content)),
    h("td", {}, discovery.related_to ? longText(discovery.related_to) : "–"),
  );
}

function showStats(stats) {
  statsLine.textContent =
    `${matching} matching · the store holds ${stats.total_discoveries} ` +
    `(${stats.capacity_used}% of its capacity) from ${stats.unique_agents} agents`;
}

let lastStats = null;

async function loadSnapshot() {
  const filter = currentFilter();
  let snapshot;
  try {
    snapshot = await getJson(form.dataset.snapshotUrl, filter);
  } catch (error) {
    errorNote.textContent = error.message;
    errorNote.hidden = false;
    throw error;
  }
  errorNote.hidden = true;
  body.replaceChildren(...snapshot.discoveries.map(row));
  matching = snapshot.matching;
  lastStats = snapshot.stats;
  showStats(lastStats);
  empty.hidden = snapshot.discoveries.length > 0;
  return snapshot;
}

function applyEvents(topic, events) {
  for (const discovery of events) {
    const item = row(discovery);
    item.classList.add("changed");
    body.prepend(item);
    matching += 1;
    if (lastStats) {
      // the store evicts beyond its capacity; the share follows the count (agents/discoveries.py capacity_used)
      lastStats.total_discoveries = Math.min(lastStats.total_discoveries + 1, CAPACITY);
      lastStats.capacity_used = Math.round((1000 * lastStats.total_discoveries) / CAPACITY) / 10;
    }
  }
  while (body.childElementCount > KEEP) body.lastElementChild.remove();
  empty.hidden = body.childElementCount > 0;
  if (lastStats) showStats(lastStats);
}

const live = startLive({
  topics: ["discoveries"],
  filters: { discoveries: currentFilter() },
  loadSnapshot,
  applyEvents,
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const filter = currentFilter();
  history.replaceState(null, "", `?${new URLSearchParams(filter)}`);
  live.resubscribe({ filters: { discoveries: filter } });
});
