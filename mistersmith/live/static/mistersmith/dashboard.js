/**
 * The dashboard: panels filled from the snapshot (GET dashboard:snapshot), kept current by the
 * live topics, with a throttled re-read of the part an event made stale.
 *
 * - agents: a state change names only the new state, so the counts cannot be moved exactly from
 *   the event alone; a frame with state changes re-reads the "agents" part (at most once a second).
 * - supervision: a restart request adds one to the current minute's restart bar at once (the rates
 *   are uPlot bar charts, values on hover; vendor/uplot via uplot_look.js); the rates
 *   and node counts are then re-read (throttled) so the bars match the database.
 * - pool: the runtime's answers to the console's SystemHealth and PoolStatus requests (stored by
 *   the bridge, polled with the pool part); a system.health message, if a publisher sends one,
 *   shows its figures when it is newer than the last answer.
 * - events: the event log's messages (users with that right); others see the agents and
 *   supervision events summarized.
 * - attention: the "needs attention" items (console/dashboard/attention.py), each count a link to the
 *   list it counts; re-read after agent and supervision events and with the polled figures, since
 *   silence and staleness grow without any event.
 * - Stream health and the console's own pool are polled every few seconds: they are figures the
 *   servers keep (message and byte counts, consumer lag, open connections), not events; nothing is
 *   published when a stream grows or a consumer falls behind, so there is nothing to subscribe to.
 *
 * Every value from the runtime is set through textContent (h()), never as HTML.
 */
import { ago, flash, getJson, h, readJson, startLive, subjectWithAgentLinks } from "./live.js";
import { plot, themeColours, themedAxes, utc } from "./uplot_look.js";

const config = readJson("dashboard-config");
const MAX_EVENTS = 20;
const numbers = new Intl.NumberFormat("en-US");

const state = {
  rates: null,
  rateCharts: {}, // series name -> its uPlot
  runtimeSequence: 0,
  events: [], // newest first
  eventsSeen: {}, // stream -> last sequence the events list reflects
};
window.misterSmithDashboard = state;

const visible = (part) => config.parts.includes(part);

function setText(element, text, { highlight = true } = {}) {
  if (!element || element.textContent === text) return;
  const first = element.textContent === "–";
  element.textContent = text;
  if (highlight && !first) flash(element);
}

function showError(panel, message) {
  const note = panel && panel.querySelector("[data-error]");
  if (!note) return;
  note.textContent = message || "";
  note.hidden = !message;
  panel.dataset.state = message ? "unavailable" : "ok";
}

/* ---- counts ---------------------------------------------------------------------------------- */

function renderCounts(panelId, counts) {
  const panel = document.getElementById(panelId);
  if (!panel || !counts) return;
  const body = panel.querySelector("tbody");
  let total = 0;
  for (const [key, count] of Object.entries(counts)) {
    total += count;
    let row = [...body.rows].find((r) => r.dataset.key === key);
    if (!row) {
      // a value outside the enum (written by someone else): shown rather than hidden
      row = h(
        "tr",
        { "data-key": key },
        h("th", { scope: "row" }, key),
        h("td", { className: "number", "data-count": true }, "–"),
      );
      body.append(row);
    }
    setText(row.querySelector("[data-count]"), numbers.format(count));
    row.toggleAttribute("data-zero", count === 0);
  }
  setText(panel.querySelector("[data-total]"), numbers.format(total));
  panel.dataset.ready = "true";
}

/* ---- needs attention ------------------------------------------------------------------------ */

function attentionItem(item) {
  const first = item.links[0];
  const count = `${numbers.format(item.count)}${item.capped ? "+" : ""}`;
  const countElement = first
    ? h("a", { className: "attention-count", href: first.url, title: first.label }, count)
    : h("span", { className: "attention-count" }, count);
  const links = item.links.map((link) => h("a", { href: link.url, className: "attention-link" }, link.label));
  const separated = links.flatMap((link, index) => (index ? [" · ", link] : [link]));
  return h(
    "li",
    { "data-key": item.key, "data-count": item.count },
    countElement,
    h("span", { className: "attention-text" }, item.text),
    h("span", { className: "attention-links" }, ...separated),
  );
}

function renderAttention(attention) {
  const panel = document.getElementById("panel-attention");
  if (!panel || !attention) return;
  const before = new Map([...panel.querySelectorAll("[data-list] li")].map((li) => [li.dataset.key, li.dataset.count]));
  const items = attention.items.map(attentionItem);
  for (const li of items) if (before.get(li.dataset.key) !== li.dataset.count && panel.dataset.ready) flash(li);
  panel.querySelector("[data-list]").replaceChildren(...items);
  panel.querySelector("[data-empty]").hidden = items.length > 0;
  showError(panel, attention.freshness_error ? `Stale feeds unknown: ${attention.freshness_error}` : "");
  panel.dataset.state = items.length ? "attention" : "ok";
  panel.dataset.ready = "true";
}

/* ---- rates ----------------------------------------------------------------------------------- */

const RATE_HEIGHT = 110;

/** The last hour per minute as uPlot bars; the current minute, still filling, is the last bar. */
function drawSeries(figure, name, series, start) {
  const counts = series.counts;
  const total = counts.reduce((sum, n) => sum + n, 0);
  const peak = Math.max(0, ...counts);
  const label =
    `${name === "failures" ? "Failures" : "Restarts"} per minute over the last ${counts.length} minutes: ` +
    `${numbers.format(total)} in total, at most ${numbers.format(peak)} in one minute.`;
  const holder = figure.querySelector("[data-chart]");
  holder.setAttribute("role", "img");
  holder.setAttribute("aria-label", label);
  const first = Math.floor(start.getTime() / 1000);
  const minutes = counts.map((_, index) => first + index * 60);
  const colours = themeColours();
  if (state.rateCharts[name]) state.rateCharts[name].destroy();
  state.rateCharts[name] = plot(
    {
      width: Math.max(240, holder.clientWidth || 300),
      height: RATE_HEIGHT,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      legend: { live: true },
      series: [
        { label: "Minute", value: (u, v) => (v == null ? "–" : `${uPlot.fmtDate("{HH}:{mm}")(utc(v))} UTC`) },
        {
          label: name === "failures" ? "Failures" : "Restarts",
          fill: name === "failures" ? colours.error : colours.link,
          stroke: name === "failures" ? colours.error : colours.link,
          paths: uPlot.paths.bars({ size: [0.8, 100] }),
          points: { show: false },
          value: (u, v) => (v == null ? "–" : numbers.format(v)),
        },
      ],
      axes: themedAxes(),
    },
    [minutes, counts],
    holder,
  );
  const totalLink = figure.querySelector("[data-total]");
  setText(totalLink, `${numbers.format(total)} in the last hour`);
  if (totalLink.dataset.listUrl) {
    // the changelist of the rows counted: those since the window's first minute
    const query = new URLSearchParams({ [`${totalLink.dataset.timeField}__gte`]: start.toISOString() });
    totalLink.href = `${totalLink.dataset.listUrl}?${query}`;
  }
  figure.querySelector("[data-peak]").textContent = `(peak ${numbers.format(peak)}/min)`;
  figure.dataset.total = String(total);
  figure.dataset.now = String(counts[counts.length - 1]); // the current minute's count
}

function renderRates(rates) {
  if (!rates) return;
  state.rates = rates;
  const start = new Date(rates.start);
  for (const name of ["failures", "restarts"]) {
    const figure = document.getElementById(`rate-${name}`);
    if (figure && rates[name]) drawSeries(figure, name, rates[name], start);
  }
  const panel = document.getElementById("panel-rates");
  if (panel) panel.dataset.ready = "true";
}

/** A restart was requested just now: one more in the current minute, until the re-read corrects it. */
function bumpRestarts(count) {
  const series = state.rates && state.rates.restarts;
  if (!series) return;
  series.counts[series.counts.length - 1] += count;
  series.total += count;
  renderRates(state.rates);
}

/* ---- pools ----------------------------------------------------------------------------------- */

function setFields(table, values) {
  for (const [field, value] of Object.entries(values)) {
    const text = value === null || value === undefined ? "–" : String(value);
    setText(table.querySelector(`[data-field="${field}"]`), text);
  }
}

function renderConsolePool(stats) {
  const table = document.getElementById("pool-console");
  if (!table || !stats) return;
  if (!stats.pooled) {
    table.querySelector("caption").textContent = "Console (PostgreSQL): no pool, pooling is off";
    setFields(table, { in_use: null, size: null, available: null, bounds: null, waiting: null });
    return;
  }
  setFields(table, {
    in_use: numbers.format(stats.in_use),
    size: numbers.format(stats.size),
    available: numbers.format(stats.available),
    bounds: `${stats.min} / ${stats.max}`,
    waiting: numbers.format(stats.waiting),
  });
}

/** The pool fields of a health message: bare, or under one variant name. */
function healthReport(body) {
  let report = body && typeof body === "object" && "payload" in body && "message_id" in body ? body.payload : body;
  if (report && typeof report === "object") {
    const keys = Object.keys(report);
    if (keys.length === 1 && report[keys[0]] && typeof report[keys[0]] === "object") report = report[keys[0]];
  }
  if (!report || typeof report !== "object" || !("pool_active" in report || "healthy" in report)) return null;
  return report;
}

/** The figures shown come from whichever is newer: the runtime's answer to the console's
 * requests, or a system.health message (should a publisher send one; the runtime does not). */
function showRuntimeFigures(figures, at) {
  const table = document.getElementById("pool-runtime");
  if (!table || !figures) return;
  if (at && state.runtimeFiguresAt && Date.parse(at) < Date.parse(state.runtimeFiguresAt)) return;
  state.runtimeFiguresAt = at || state.runtimeFiguresAt;
  const healthy = figures.healthy === true ? "yes" : figures.healthy === false ? "no" : "–";
  setFields(table, {
    pool_active: figures.pool_active,
    pool_capacity: figures.pool_capacity,
    pool_available: figures.pool_available,
    healthy,
  });
  table.querySelector('[data-field="healthy"]').dataset.healthy = String(figures.healthy);
}

/** One request's state in words, counting on between snapshots ("no answer for 95 s"). */
function probeText(probe, now = Date.now()) {
  if (!probe) return "–";
  const since = (iso) => Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (probe.state === "never_asked") return "never asked";
  if (probe.state === "no_answer") {
    const last = probe.answered_at ? ` (last answer ${ago(probe.answered_at, now)})` : "";
    return `no answer for ${since(probe.unanswered_since)} s${last}`;
  }
  if (probe.state === "waiting") return `asked ${ago(probe.asked_at, now)}, waiting for the answer`;
  if (probe.state === "error") return `answered with an error ${ago(probe.answered_at, now)}: ${probe.error}`;
  return `answered ${ago(probe.answered_at, now)}`;
}

function drawProbes() {
  const table = document.getElementById("pool-runtime");
  if (!table || !state.runtime) return;
  for (const [field, probe] of [
    ["health_state", state.runtime.health],
    ["pool_state", state.runtime.pool_status],
  ]) {
    const cell = table.querySelector(`[data-field="${field}"]`);
    cell.textContent = probeText(probe);
    cell.dataset.state = probe ? probe.state : "";
  }
}

function renderRuntimePool(runtime) {
  const table = document.getElementById("pool-runtime");
  if (!table || !runtime) return;
  state.runtime = runtime;
  setFields(table, { pool_agents: runtime.pool_agents });
  if (runtime.answered_at) showRuntimeFigures(runtime.figures, runtime.answered_at);
  drawProbes();
  table.dataset.state = runtime.health ? runtime.health.state : "";
}

function renderHealthReport(report) {
  const table = document.getElementById("pool-runtime");
  if (!table || report === undefined) return;
  const panel = document.getElementById("panel-pool");
  if (report && report.error) {
    showError(panel, `system.health: ${report.error}`);
    return;
  }
  showError(panel, "");
  if (!report) {
    setFields(table, { time: "none (the runtime answers requests instead)" });
    return;
  }
  if (report.sequence && report.sequence < state.runtimeSequence) return; // older than what is shown
  state.runtimeSequence = report.sequence || state.runtimeSequence;
  state.runtimeReportedAt = report.time;
  setFields(table, { time: report.time ? ago(report.time) : "–" });
  showRuntimeFigures(report, report.time);
  table.dataset.sequence = String(state.runtimeSequence);
}

/* ---- streams --------------------------------------------------------------------------------- */

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function formatAge(seconds) {
  if (!seconds) return "—";
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  return `${Math.round(seconds)} s`;
}

function streamRow(stream) {
  if (!stream.exists) {
    const name = h("th", { scope: "row" }, stream.name);
    return h("tr", { "data-stream": stream.name }, name, h("td", { colspan: 6 }, "missing"));
  }
  const limits = stream.limits;
  const used = stream.most_used_percent;
  const detail = Object.entries(stream.used_percent)
    .filter(([, percent]) => percent !== null)
    .map(([name, percent]) => `${name} ${percent}%`)
    .join(", ");
  const level = used === null ? null : used >= 95 ? "full" : used >= 80 ? "warn" : "ok";
  const consumers = stream.consumers.map((c) =>
    c.exists
      ? h(
          "span",
          { className: "consumer", "data-consumer": c.name },
          `${c.name}: ${numbers.format(c.pending)} / ${numbers.format(c.ack_pending)}`,
        )
      : h("span", { className: "consumer", "data-consumer": c.name, "data-missing": true }, `${c.name}: not created`),
  );
  return h(
    "tr",
    { "data-stream": stream.name },
    h("th", { scope: "row" }, stream.name),
    h("td", { className: "number", "data-field": "messages" }, numbers.format(stream.messages)),
    h("td", { className: "number", "data-field": "bytes" }, formatBytes(stream.bytes)),
    h(
      "td",
      { "data-field": "limits" },
      [
        limits.max_msgs ? numbers.format(limits.max_msgs) : "—",
        formatBytes(limits.max_bytes),
        formatAge(limits.max_age_seconds),
      ].join(" / "),
    ),
    h(
      "td",
      { className: "number", "data-field": "used", "data-level": level, title: detail || "no limit" },
      used === null ? "—" : `${used}%`,
    ),
    h("td", { className: "number", "data-field": "consumers" }, numbers.format(stream.consumer_count)),
    h("td", { "data-field": "console-consumers" }, consumers.length ? consumers : "—"),
  );
}

function renderStreams(data) {
  const panel = document.getElementById("panel-streams");
  if (!panel || !data) return;
  if (data.error) {
    showError(panel, data.error);
    panel.querySelector("[data-rows]").replaceChildren();
    return;
  }
  showError(panel, "");
  panel.querySelector("[data-rows]").replaceChildren(...data.streams.map(streamRow));
  panel.dataset.ready = "true";
}

/* ---- latest events --------------------------------------------------------------------------- */

const NODE_IN_TEXT = /\bnode ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b/i;

/** "restart requested for node <uuid>": the node's id a link to its place in the tree (if the user may see it). */
function withNodeLinks(text) {
  const found = config.nodeTreeUrl && NODE_IN_TEXT.exec(text);
  if (!found) return text;
  const id = found[1];
  const start = found.index + found[0].length - id.length;
  const link = h("a", { href: config.nodeTreeUrl.replace(config.placeholder, id), className: "node-link" }, id);
  return h("span", {}, text.slice(0, start), link, text.slice(start + id.length));
}

function eventItem(item, fresh) {
  const time = item.time ? new Date(item.time) : new Date();
  const li = h(
    "li",
    { "data-stream": item.stream, "data-sequence": item.sequence },
    h("time", { datetime: time.toISOString(), title: time.toISOString() }, time.toISOString().slice(11, 19)),
    h("span", { className: "event-stream" }, `${item.stream} #${item.sequence}`),
    h(
      "span",
      {},
      h("span", { className: "event-subject" }, subjectWithAgentLinks(item.subject || "", config.agentLinks)),
      h("span", { className: "event-text" }, withNodeLinks(item.text || "")),
    ),
  );
  if (fresh) li.classList.add("changed");
  return li;
}

function drawEvents(fresh = new Set()) {
  const panel = document.getElementById("panel-events");
  if (!panel) return;
  const list = panel.querySelector("[data-list]");
  list.replaceChildren(...state.events.map((item) => eventItem(item, fresh.has(item))));
  panel.querySelector("[data-empty]").hidden = state.events.length > 0;
  panel.dataset.ready = "true";
}

function renderEvents(events) {
  if (!events) return;
  const panel = document.getElementById("panel-events");
  if (events.error) {
    showError(panel, events.error);
    drawEvents();
    return;
  }
  showError(panel, "");
  state.eventsSeen = events.seen || {};
  state.events = events.items.slice(0, MAX_EVENTS);
  drawEvents();
}

function addEvents(items) {
  const fresh = new Set();
  for (const item of items) {
    if (!item || !item.stream || !Number.isFinite(item.sequence)) continue;
    if ((state.eventsSeen[item.stream] || 0) >= item.sequence) continue; // already in the list (or older)
    state.eventsSeen[item.stream] = item.sequence;
    state.events.unshift(item);
    fresh.add(item);
  }
  if (!fresh.size) return;
  state.events = state.events.slice(0, MAX_EVENTS);
  drawEvents(fresh);
}

/** The one line a user without the event log sees (the server's summarize() says the same). */
function agentSummary(event) {
  if (event.kind === "Heartbeat") return null;
  return {
    stream: event.stream,
    sequence: event.sequence,
    subject: `agent.${event.agent_id}.events`,
    time: event.at || new Date().toISOString(),
    text: `${event.kind} agent ${event.agent_id}${event.status ? ` → ${event.status}` : ""}`,
  };
}

function supervisionSummary(event) {
  let text = event.subject || event.kind;
  if (event.kind === "restart_requested") text = `restart requested for node ${event.node_id}`;
  if (event.kind === "restart_completed") {
    text = `restart ${event.success ? "succeeded" : "failed"} on node ${event.node_id}`;
  }
  return {
    stream: event.stream,
    sequence: event.sequence,
    subject: event.subject || "system.control",
    time: new Date().toISOString(),
    text,
  };
}

/* ---- loading --------------------------------------------------------------------------------- */

function render(data) {
  if (data.attention) renderAttention(data.attention);
  if (data.agents) renderCounts("panel-agents", data.agents.counts);
  if (data.nodes) renderCounts("panel-nodes", data.nodes.counts);
  if (data.rates) renderRates(data.rates);
  if (data.pool) {
    renderConsolePool(data.pool.console);
    renderRuntimePool(data.pool.runtime);
    renderHealthReport(data.pool.health_report);
  }
  if (data.streams) renderStreams(data.streams);
  if (data.events) renderEvents(data.events);
}

async function loadSnapshot() {
  const data = await getJson(config.snapshotUrl);
  render(data);
  return { positions: data.positions };
}

/** Re-read parts of the snapshot, at most once per `refetchSeconds` however many events ask. */
const refetcher = { pending: new Set(), last: 0, timer: null, running: false };

function refetch(...parts) {
  for (const part of parts) if (visible(part)) refetcher.pending.add(part);
  if (!refetcher.pending.size || refetcher.timer || refetcher.running) return;
  const wait = Math.max(0, refetcher.last + config.refetchSeconds * 1000 - Date.now());
  refetcher.timer = setTimeout(runRefetch, wait);
}

async function runRefetch() {
  refetcher.timer = null;
  const parts = [...refetcher.pending];
  refetcher.pending.clear();
  refetcher.last = Date.now();
  refetcher.running = true;
  try {
    render(await getJson(config.snapshotUrl, { parts: parts.join(",") }));
  } catch (error) {
    console.warn("dashboard: re-reading", parts.join(", "), "failed:", error.message);
  } finally {
    refetcher.running = false;
  }
  if (refetcher.pending.size) refetch();
}

function applyEvents(topic, events) {
  if (topic === "agents") {
    if (events.some((event) => event.status)) refetch("agents", "attention");
    if (!config.eventLog) addEvents(events.map(agentSummary));
  } else if (topic === "supervision") {
    const requested = events.filter((event) => event.kind === "restart_requested").length;
    if (requested) bumpRestarts(requested);
    refetch("rates", "nodes", "attention");
    // The server words supervision events (task allocation, lifecycle, health, errors): re-read them.
    if (!config.eventLog) {
      addEvents(events.filter((event) => event.kind.startsWith("restart_")).map(supervisionSummary));
      if (events.some((event) => !event.kind.startsWith("restart_"))) refetch("events");
    }
  } else if (topic === "system") {
    for (const event of events) {
      if (event.kind !== "system.health") continue;
      const report = healthReport(event.body);
      if (report) renderHealthReport({ ...report, sequence: event.sequence, time: new Date().toISOString() });
    }
  } else if (topic === "events") {
    addEvents(events.map((event) => ({ ...event, text: event.summary || event.excerpt })));
  }
}

function startTimers() {
  // Figures that change without an event: polled.
  setInterval(() => {
    // silence and staleness grow without an event: the attention panel is re-read with them
    if (!document.hidden) refetch("streams", "pool", "attention");
  }, config.pollSeconds * 1000);
  // The hour's window moves on each minute (and the runtime writes failures without an event).
  const untilNextMinute = 60000 - (Date.now() % 60000) + 500;
  setTimeout(() => {
    refetch("rates");
    setInterval(() => refetch("rates"), 60000);
  }, untilNextMinute);
  // "12 s ago" keeps counting between reports.
  setInterval(() => {
    const cell = document.querySelector('#pool-runtime [data-field="time"]');
    if (cell && state.runtimeReportedAt) cell.textContent = ago(state.runtimeReportedAt);
    drawProbes();
  }, 1000);
}

if (config.parts.length) {
  startLive({ topics: config.topics, loadSnapshot, applyEvents });
  startTimers();
} else {
  const badge = document.getElementById("live-badge");
  if (badge) badge.hidden = true;
}
