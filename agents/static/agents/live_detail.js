/**
 * One agent, live: facts, configuration, sessions, instances, anomalies and commands from the snapshot;
 * the "agent.<uuid>" topic adds events to the history, Output text to the live output pane, and moves
 * the state and heartbeat in place. Commands (for those who may send them) post to the command
 * endpoint and show the runtime's answer, or why there is none.
 *
 * No value is ever parsed as HTML: everything goes through h() and textContent.
 */
import { ago, flash, getJson, h, readJson, startLive, timeElement } from "../mistersmith/live.js";
import { heartbeatsHiddenInUrl, keepHeartbeatsInUrl, payloadView } from "../mistersmith/payload.js";
import { OutputPane } from "./output_pane.js";
import {
  appliedState,
  longText,
  PREVIEW_CHARS,
  newer,
  nextUpSince,
  orDash,
  since,
  stateBadge,
  urlFor,
  yesNo,
} from "./agents_common.js";

const config = readJson("agent-config-data");
const urls = config.urls;
const agentId = config.agentId;
const HISTORY_LIMIT = 300;
const OUTPUT_LIMIT = 1000; // lines kept in the output pane

const $ = (id) => document.getElementById(id);
const facts = $("agent-facts");
const configList = $("agent-config");
const output = new OutputPane($("agent-output"), {
  limit: OUTPUT_LIMIT,
  filter: $("agent-output-filter"),
  count: $("agent-output-count"),
  download: $("agent-output-download"),
  fileName: `agent-${agentId}-output.txt`,
});
const historyTable = $("agent-history");
const historyBody = historyTable.querySelector("tbody");
const hideHeartbeats = $("agent-history-hide-heartbeats");
const historyError = $("agent-history-error");
const errorLine = $("agent-error");
const result = $("agent-command-result");

let agent = null; // the agent's row as the snapshot gave it, kept current by events
const seen = new Set(); // stream sequences already in the history
let seenFloor = 0; // events at or below it are older than the whole table (see forgetOldSequences)
let historyHidden = false; // this user may not see the stored history: live events draw no row either
const live = { state: null, uptime: null, heartbeat: null, restart: null };

function definitions(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function renderFacts() {
  live.state = h("span", { id: "agent-state" }, stateBadge(agent.status));
  live.uptime = h("span", { id: "agent-uptime" }, since(agent.up_since));
  live.heartbeat = h("span", { id: "agent-heartbeat", title: agent.last_heartbeat || "" }, ago(agent.last_heartbeat));
  const node = agent.node ? h("a", { href: urlFor(urls, "node", agent.node.id) }, `${agent.node.name} (${agent.node.status})`) : "—";
  // Error or Terminated: the way back is a restart of its node, through the supervisor.
  live.restart = config.restartUrl
    ? h("a", { id: "agent-node-restart", className: "agent-restart-link", href: config.restartUrl }, "Restart through the supervisor")
    : null;
  const nodeFacts = live.restart ? h("span", {}, node, " ", live.restart) : node;
  definitions(facts, [
    ["State", live.state],
    ["Uptime", live.uptime],
    ["Last heartbeat", live.heartbeat],
    ["Id", h("code", {}, agent.id)],
    ["Type", agent.agent_type],
    ["Supervision node", nodeFacts],
    ["Created", timeElement(agent.created_at)],
    ["Admin", h("a", { href: urlFor(urls, "admin", agent.id) }, "Change in the admin")],
  ]);
  const c = agent.config;
  definitions(configList, [
    ["Model", c.model],
    ["Max turns", orDash(c.max_turns)],
    ["Timeout", c.timeout_seconds ? `${c.timeout_seconds} s` : "—"],
    ["Memory limit", c.memory_limit_mb ? `${c.memory_limit_mb} MB` : "—"],
    ["MCP", yesNo(c.enable_mcp)],
    ["Allowed tools", c.allowed_tools && c.allowed_tools.length ? c.allowed_tools.join(", ") : "every tool"],
  ]);
  updateButtons();
  updateRestart();
}

function updateRestart() {
  if (live.restart) live.restart.hidden = !config.restartStates.includes(agent.status);
}

function rowsOf(tbody, items, makeRow, emptyText, columns) {
  tbody.replaceChildren(
    ...(items.length ? items.map(makeRow) : [h("tr", {}, h("td", { colspan: columns, className: "live-empty" }, emptyText))]),
  );
}

function renderTables(snapshot) {
  const hidden = snapshot.hidden || {};
  rowsOf(
    $("agent-instances").querySelector("tbody"),
    snapshot.instances,
    (i) =>
      h(
        "tr",
        {},
        h("td", {}, h("code", {}, i.id.slice(0, 8))),
        h("td", {}, i.status),
        h("td", {}, i.host_name ? `${i.host_name}:${orDash(i.port)}` : "—"),
        h("td", {}, timeElement(i.started_at)),
        h("td", {}, ago(i.last_heartbeat)),
      ),
    hidden.instances || "No instance recorded.",
    5,
  );
  rowsOf(
    $("agent-anomalies").querySelector("tbody"),
    snapshot.anomalies,
    (a) =>
      h(
        "tr",
        {},
        h("td", {}, timeElement(a.recorded_at)),
        h("td", {}, a.event_kind),
        h("td", {}, `${a.current_state || "?"} → ${a.attempted_state || "?"}`),
        h("td", {}, longText(a.detail)),
      ),
    hidden.anomalies || "No anomaly.",
    4,
  );
  const commandsEmpty = hidden.commands || "No command sent yet.";
  rowsOf($("agent-command-log").querySelector("tbody"), snapshot.commands, commandRow, commandsEmpty, 5);
  const sessions = $("agent-sessions");
  if (!snapshot.sessions.length) {
    sessions.replaceChildren(h("p", { className: "live-empty" }, hidden.sessions || "No interactive session."));
  } else {
    sessions.replaceChildren(
      ...snapshot.sessions.map((s) =>
        h(
          "div",
          { className: "agent-session", "data-session-id": s.id },
          h(
            "h3",
            {},
            `Session ${s.id.slice(0, 8)} · ${s.state}${s.error ? `: ${s.error}` : ""} · ${s.message_total} messages · started `,
            timeElement(s.started_at),
          ),
          s.messages.length
            ? s.messages.map((m) =>
                h(
                  "div",
                  { className: "agent-message" },
                  h("span", { className: "agent-message-role" }, `${m.role}:`),
                  " ",
                  longText(m.content, { length: m.content_length, load: () => getJson(urlFor(urls, "text", agentId), { message: m.id }) }),
                ),
              )
            : h("p", { className: "live-empty" }, hidden.messages || "No message yet."),
        ),
      ),
    );
  }
}

function commandRow(record) {
  return h(
    "tr",
    {},
    h("td", {}, timeElement(record.requested_at)),
    h("td", {}, record.command),
    h("td", {}, orDash(record.requested_by)),
    h("td", { "data-outcome": record.outcome }, record.outcome),
    h("td", {}, record.detail),
  );
}

/** An event's text: whole when short, else a preview that loads the rest from the stream by its sequence.
 * A snapshot event says its whole length (text_length); a live frame's text is cut at PREVIEW_CHARS unsaid. */
function eventText(event) {
  const fromStream = event.sequence !== undefined && event.sequence !== null && ["Output", "Error"].includes(event.kind);
  return longText(event.text, {
    length: event.text_length ?? null,
    mayBeCut: event.text_length === undefined && fromStream,
    load: fromStream ? () => getJson(urlFor(urls, "text", agentId), { sequence: event.sequence }) : null,
  });
}

/** One history line: the same drawing for stored events (snapshot) and live ones (frames). */
function historyRow(event) {
  let detail = "";
  if (event.kind === "StateChanged") detail = `${event.old_status ? `${event.old_status} ` : ""}→ ${event.status}`;
  else if (event.kind === "Terminated") detail = event.reason || "";
  else if (event.kind === "Heartbeat") detail = event.at ? `at ${new Date(event.at).toLocaleString()}` : "";
  else if (event.text !== undefined) detail = eventText(event);
  if (event.result && !["state_changed", "in_sync", "heartbeat", "output", "spawned", "already_spawned"].includes(event.result)) {
    detail = h("span", {}, detail, ` [${event.result}]`);
  }
  const hasSequence = event.sequence !== undefined && event.sequence !== null;
  return h(
    "tr",
    { "data-sequence": event.sequence ?? "", "data-kind": event.kind },
    h("td", {}, event.sequence ?? ""),
    h("td", {}, timeElement(event.time || event.at || null)),
    h("td", {}, event.kind),
    h(
      "td",
      { className: "agent-detail-text" },
      detail,
      hasSequence ? payloadView(() => getJson(urlFor(urls, "payload", agentId), { sequence: event.sequence })) : null,
    ),
  );
}

function addHistory(event, atTop) {
  if (event.sequence !== undefined && event.sequence !== null) {
    if (seen.has(event.sequence) || event.sequence <= seenFloor) return false;
    seen.add(event.sequence);
  }
  if (historyHidden) {
    if (seen.size > HISTORY_LIMIT * 10) forgetOldSequences();
    return true;
  }
  const row = historyRow(event);
  if (atTop) historyBody.prepend(row);
  else historyBody.append(row);
  while (historyBody.rows.length > HISTORY_LIMIT) historyBody.lastElementChild.remove();
  if (seen.size > HISTORY_LIMIT * 10) forgetOldSequences();
  return true;
}

/** Keep ``seen`` as small as the table: remember the rows shown, and drop whatever is older than
 * all of them (an old event redelivered after this point would be below the table anyway). */
function forgetOldSequences() {
  const rows = [...historyBody.rows].map((row) => Number(row.dataset.sequence)).filter((n) => n > 0);
  const shown = historyHidden ? [...seen].sort((a, b) => a - b).slice(-HISTORY_LIMIT) : rows;
  if (!shown.length) return;
  seen.clear();
  for (const sequence of shown) seen.add(sequence);
  seenFloor = Math.max(seenFloor, Math.min(...shown) - 1);
}

/** An Output's chunk for the output pane: its text (saying so when the page holds only its start)
 * and its time: the stream's time of a stored message, the runtime's when it says one, else when
 * this page received it (a live frame carries neither). */
function outputLine(event) {
  let text = event.text;
  if (event.text_length !== undefined && event.text_length > event.text.length) {
    text = `${event.text} [… ${event.text_length - event.text.length} more characters: "show all" in the history]`;
  } else if (event.text_length === undefined && event.text.length >= PREVIEW_CHARS) {
    text = `${event.text} [… cut here: "show all" in the history]`;
  }
  return { text, time: event.time || event.at || new Date().toISOString(), received: !event.time && !event.at };
}

function appendOutput(chunks) {
  output.append(chunks);
}

function render(snapshot) {
  agent = snapshot.agent;
  renderFacts();
  renderTables(snapshot);
  seen.clear();
  seenFloor = 0;
  historyHidden = Boolean(snapshot.hidden && snapshot.hidden.history);
  historyBody.replaceChildren();
  output.clear();
  const texts = [];
  for (const event of snapshot.history) {
    addHistory(event, true); // the snapshot comes oldest first; newest ends on top
    if (event.kind === "Output" && event.text) texts.push(outputLine(event));
  }
  appendOutput(texts);
  historyError.hidden = !snapshot.history_error;
  historyError.textContent = snapshot.history_error || "";
  if (!snapshot.history.length && !snapshot.history_error) {
    historyBody.append(h("tr", { className: "agent-history-empty" }, h("td", { colspan: 4, className: "live-empty" }, "No event in the stream.")));
  }
  errorLine.hidden = true;
  document.body.dataset.agentReady = "true";
}

/** One live event; an Output's text is added to ``texts`` for the batch's one appendOutput. */
function applyEvent(event, texts) {
  if (event.agent_id !== agentId || !agent) return;
  if (!addHistory(event, true)) return;
  if (event.kind === "Output" && event.text !== undefined) texts.push(outputLine(event));
  if (event.kind === "Heartbeat" && event.at) {
    agent.last_heartbeat = newer(agent.last_heartbeat, event.at);
    live.heartbeat.textContent = ago(agent.last_heartbeat);
    live.heartbeat.title = agent.last_heartbeat;
    return;
  }
  const state = appliedState(event);
  if (state && state !== agent.status) {
    agent.up_since = nextUpSince(agent, state, event.at);
    agent.status = state;
    live.state.replaceChildren(stateBadge(state));
    live.uptime.textContent = since(agent.up_since);
    flash(live.state);
    updateButtons();
    updateRestart();
  }
}

// -- heartbeats: hidden from the history on request (kept in the URL) -------------------------------

function showHeartbeats() {
  historyTable.classList.toggle("hide-heartbeats", hideHeartbeats.checked);
}
hideHeartbeats.checked = heartbeatsHiddenInUrl();
showHeartbeats();
hideHeartbeats.addEventListener("change", () => {
  keepHeartbeatsInUrl(hideHeartbeats.checked);
  showHeartbeats();
});

// -- commands ---------------------------------------------------------------------------------------

const buttons = [...document.querySelectorAll(".agent-command-buttons button[data-command]")];
const stopPanel = $("agent-stop-confirm");
let busy = false;

function updateButtons() {
  for (const button of buttons) {
    const allowed = config.commands[button.dataset.command];
    const forbidden = Array.isArray(allowed) && agent && !allowed.includes(agent.status);
    button.disabled = busy || Boolean(forbidden);
    button.title = forbidden ? `Not while the agent is ${agent.status} (only from ${allowed.join(", ")})` : "";
  }
  if (stopPanel && (busy || (agent && !config.commands.Stop.includes(agent.status)))) stopPanel.hidden = true;
}

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function showResult(outcome, title, data) {
  result.hidden = false;
  result.dataset.outcome = outcome;
  const parts = [h("strong", { className: "agent-result-title" }, title)];
  if (data !== null && data !== undefined) parts.push(h("pre", { className: "agent-result-data" }, JSON.stringify(data, null, 2)));
  result.replaceChildren(...parts);
}

const FAILURES = { 400: "Not sent", 403: "Not allowed", 404: "Not found", 409: "Refused", 502: "Unreadable answer", 503: "Unavailable", 504: "No answer in time" };

async function send(command, options = {}) {
  busy = true;
  updateButtons();
  showResult("pending", `${command}: waiting for the runtime…`, null);
  const body = new URLSearchParams({ command, ...options });
  try {
    const response = await fetch(urlFor(urls, "command", agentId), {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      body,
      credentials: "same-origin",
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (response.ok && answer && answer.response) {
      const r = answer.response;
      const said = answer.summary || r.message;
      showResult(answer.outcome, `${command}: ${r.success ? "done" : "refused by the runtime"} — ${said}`, r.data);
      addCommandLog(command, answer.outcome, said);
    } else {
      const label = FAILURES[response.status] || `Failed (${response.status})`;
      const text = (answer && answer.error) || response.statusText || "no details";
      showResult((answer && answer.outcome) || "error", `${command}: ${label} — ${text}`, null);
      if (answer && answer.outcome) addCommandLog(command, answer.outcome, text);
    }
  } catch (error) {
    showResult("error", `${command}: the console could not be reached — ${error.message}`, null);
  } finally {
    busy = false;
    updateButtons();
  }
}

function addCommandLog(command, outcome, detail) {
  const tbody = $("agent-command-log").querySelector("tbody");
  tbody.querySelector(".live-empty")?.closest("tr")?.remove();
  tbody.prepend(commandRow({ requested_at: new Date().toISOString(), command, outcome, requested_by: "you", detail }));
}

for (const button of buttons) {
  button.addEventListener("click", () => {
    if (button.dataset.command === "Stop") {
      stopPanel.hidden = false;
      $("agent-stop-no").focus();
      return;
    }
    send(button.dataset.command);
  });
}
if (stopPanel) {
  $("agent-stop-no").addEventListener("click", () => {
    stopPanel.hidden = true;
  });
  $("agent-stop-yes").addEventListener("click", () => {
    const graceful = $("agent-stop-graceful").checked;
    stopPanel.hidden = true;
    send("Stop", graceful ? { graceful: "true", timeout: $("agent-stop-timeout").value } : { graceful: "false" });
  });
}

// -- live ---------------------------------------------------------------------------------------------

startLive({
  topics: [`agent.${agentId}`],
  loadSnapshot: async () => {
    try {
      const snapshot = await getJson(urlFor(urls, "detailSnapshot", agentId));
      render(snapshot);
      return snapshot;
    } catch (error) {
      errorLine.textContent = `The agent could not be loaded: ${error.message}`;
      errorLine.hidden = false;
      throw error;
    }
  },
  applyEvents: (topic, events) => {
    historyBody.querySelector(".agent-history-empty")?.remove();
    const texts = [];
    for (const event of events) applyEvent(event, texts);
    appendOutput(texts);
  },
});
setInterval(() => {
  if (!agent) return;
  live.uptime.textContent = since(agent.up_since);
  live.heartbeat.textContent = ago(agent.last_heartbeat);
}, 1000);
