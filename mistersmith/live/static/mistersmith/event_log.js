/**
 * The event log page: a live tail of every stream (the "events" topic on top of a snapshot of the
 * newest events) with filters and pause, and a replay of what one stream retains.
 *
 * The tail keeps the newest `maxRows` events as rows; the filters hide and show rows rather than
 * drop them, so clearing a filter brings back what it hid. While paused, arriving events wait in
 * a queue (also capped at `maxRows`) and are shown on resume. Every runtime value goes through
 * h() (text nodes), never through HTML.
 */

import { getJson, h, readJson, startLive, subjectWithAgentLinks } from "./live.js";
import { heartbeatsHiddenInUrl, isHeartbeat, keepHeartbeatsInUrl, payloadView } from "./payload.js";
import { BadPattern, compilePattern } from "./subjects.js";

const config = readJson("event-log-config");
const $ = (id) => document.getElementById(id);

/** An event's identity across snapshot, frames and the pause queue. */
const keyOf = (event) => `${event.stream}:${event.sequence}`;

/** "2025-01-31 13:45:07.123" in UTC, for an ISO time. */
export function utcText(iso) {
  if (!iso) return "";
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? String(iso) : time.toISOString().replace("T", " ").replace("Z", "");
}

export function eventRow(event) {
  return h(
    "tr",
    {
      "data-key": keyOf(event),
      "data-stream": event.stream,
      "data-subject": event.subject,
      "data-heartbeat": isHeartbeat(event) ? "true" : null,
    },
    h("td", { className: "nowrap" }, h("time", { datetime: event.time, title: event.time }, utcText(event.time))),
    h("td", { className: "nowrap" }, event.stream),
    h("td", { className: "num" }, event.sequence),
    h("td", { className: "subject" }, subjectWithAgentLinks(event.subject, config.agentLinks)),
    h("td", { className: "num" }, event.size),
    h(
      "td",
      { className: "excerpt" },
      event.summary ? h("div", { className: "event-summary" }, event.summary) : null,
      h("code", {}, event.excerpt ?? ""),
      payloadView(() => getJson(config.messageUrl, { stream: event.stream, sequence: event.sequence })),
    ),
  );
}

/** The live filters of the form as one predicate (an unreadable subject pattern is not applied). */
function readFilter() {
  const stream = $("filter-stream").value;
  const pattern = $("filter-subject").value.trim();
  const text = $("filter-text").value.trim().toLowerCase();
  const hideHeartbeats = $("filter-heartbeats").checked;
  let subjectMatches = null;
  let error = "";
  if (pattern) {
    try {
      subjectMatches = compilePattern(pattern);
    } catch (problem) {
      if (!(problem instanceof BadPattern)) throw problem;
      error = `${problem.message} Not applied.`;
    }
  }
  const input = $("filter-subject");
  input.setAttribute("aria-invalid", error ? "true" : "false");
  $("filter-subject-error").textContent = error;
  return (event) =>
    (!hideHeartbeats || !isHeartbeat(event)) &&
    (!stream || event.stream === stream) &&
    (!subjectMatches || subjectMatches(event.subject)) &&
    (!text || String(event.excerpt ?? "").toLowerCase().includes(text));
}

class LiveTail {
  constructor(body, maxRows) {
    this.body = body;
    this.maxRows = maxRows;
    this.rows = new Map(); // key -> {event, row}; the DOM order is the display order
    this.pending = []; // events that arrived while paused, oldest first
    this.pendingDropped = 0;
    this.paused = false;
    this.matches = readFilter();
  }

  has(event) {
    const key = keyOf(event);
    return this.rows.has(key) || this.pending.some((waiting) => keyOf(waiting) === key);
  }

  /** Live events (oldest first): shown on top, or queued while paused. */
  add(events) {
    const fresh = events.filter((event) => event && !this.has(event));
    if (!fresh.length) return;
    if (this.paused) {
      this.pending.push(...fresh);
      const excess = this.pending.length - this.maxRows;
      if (excess > 0) {
        this.pending.splice(0, excess);
        this.pendingDropped += excess;
      }
    } else {
      this.prepend(fresh);
    }
    this.refreshCounts();
  }

  prepend(events) {
    const fragment = document.createDocumentFragment();
    for (const event of events.slice(-this.maxRows).reverse()) {
      const row = eventRow(event);
      row.hidden = !this.matches(event);
      this.rows.set(keyOf(event), { event, row });
      fragment.append(row);
    }
    this.body.prepend(fragment);
    while (this.rows.size > this.maxRows) {
      const last = this.body.lastElementChild;
      this.rows.delete(last.dataset.key);
      last.remove();
    }
  }

  /** A snapshot (newest first): its events not shown yet are merged in time order. */
  merge(snapshotEvents) {
    const fresh = snapshotEvents.filter((event) => !this.has(event));
    if (!fresh.length) return;
    const byTime = (a, b) => Date.parse(a.time) - Date.parse(b.time) || a.sequence - b.sequence;
    if (this.paused) {
      this.add([...fresh].sort(byTime));
      return;
    }
    const all = [...[...this.rows.values()].map((entry) => entry.event), ...fresh].sort(byTime);
    this.rows.clear();
    this.body.replaceChildren();
    this.prepend(all);
    this.refreshCounts();
  }

  refilter() {
    this.matches = readFilter();
    for (const { event, row } of this.rows.values()) row.hidden = !this.matches(event);
    this.refreshCounts();
  }

  pause() {
    this.paused = true;
    this.refreshCounts();
  }

  resume() {
    this.paused = false;
    const waiting = this.pending;
    this.pending = [];
    this.pendingDropped = 0;
    if (waiting.length) this.prepend(waiting);
    this.refreshCounts();
  }

  refreshCounts() {
    const kept = this.rows.size;
    let shown = 0;
    for (const { row } of this.rows.values()) if (!row.hidden) shown += 1;
    $("live-count").textContent =
      shown === kept ? `${kept} event${kept === 1 ? "" : "s"}.` : `Showing ${shown} of ${kept} events.`;
    $("live-empty").hidden = shown > 0;
    $("live-empty").textContent = kept ? "No event matches the filters." : "No events yet.";
    const badge = $("pending-count");
    badge.hidden = !this.paused;
    if (this.paused) {
      const waiting = this.pending.filter(this.matches).length;
      const dropped = this.pendingDropped ? ` (only the newest ${this.maxRows} are kept)` : "";
      badge.textContent = `Paused: ${waiting} new event${waiting === 1 ? "" : "s"}${dropped}`;
    }
    const button = $("pause-button");
    button.textContent = this.paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", this.paused ? "true" : "false");
  }
}

class Replay {
  constructor(form) {
    this.form = form;
    this.body = $("replay-rows");
    this.params = null;
    this.nextSequence = null;
    this.count = 0;
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      this.start();
    });
    $("replay-more").addEventListener("click", () => this.more());
  }

  start() {
    const params = Object.fromEntries(new FormData(this.form).entries());
    this.body.replaceChildren();
    this.count = 0;
    this.load(params);
  }

  more() {
    if (this.params && this.nextSequence != null)
      this.load({ ...this.params, start_sequence: String(this.nextSequence), start_time: "" });
  }

  async load(params) {
    const error = $("replay-error");
    const status = $("replay-status");
    const button = $("replay-more");
    const submit = $("replay-submit");
    error.hidden = true;
    status.textContent = "Reading…";
    button.disabled = submit.disabled = true; // one read at a time: pages must not interleave
    let answer;
    try {
      answer = await getJson(config.replayUrl, params);
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
      status.textContent = "";
      return;
    } finally {
      button.disabled = submit.disabled = false;
    }
    this.params = params;
    this.nextSequence = answer.next_sequence;
    this.body.append(...answer.events.map(eventRow));
    this.count += answer.events.length;
    $("replay-table").hidden = this.count === 0;
    const end = answer.has_more ? "" : " That is all the stream holds for now.";
    status.textContent = `${this.count} event${this.count === 1 ? "" : "s"} from ${answer.stream}.${end}`;
    if (answer.note && !this.count) status.textContent = answer.note; // e.g. a start time after the last message
    button.hidden = this.nextSequence == null;
  }
}

$("filter-heartbeats").checked = heartbeatsHiddenInUrl(); // before the tail reads the filters
const tail = new LiveTail($("live-rows"), config.maxRows);
$("filter-heartbeats").addEventListener("change", () => {
  keepHeartbeatsInUrl($("filter-heartbeats").checked);
  tail.refilter();
});
for (const id of ["filter-stream", "filter-subject", "filter-text"]) $(id).addEventListener("input", () => tail.refilter());
$("pause-button").addEventListener("click", () => (tail.paused ? tail.resume() : tail.pause()));
tail.refreshCounts();
new Replay($("replay-form"));

window.misterSmithEventLog = tail;
startLive({
  topics: ["events"],
  loadSnapshot: async () => {
    const snapshot = await getJson(config.snapshotUrl);
    tail.merge(snapshot.events);
    return { positions: snapshot.positions };
  },
  applyEvents: (topic, events) => {
    if (topic === "events") tail.add(events);
  },
});
