/**
 * What the two live agents pages share: links from URL templates, the state badge, durations, and
 * the rule for which live events move an agent's state. Everything is built as text (h()); the
 * helpers every live page shares (times, flash, URL templates) are in mistersmith/live.js.
 */
import { fillUrl, h } from "../mistersmith/live.js";

/** States in which the agent's process lives and so has an uptime (agents/selectors.py UP_STATES). */
export const UP_STATES = new Set(["Starting", "Running", "Idle", "Processing", "Paused", "Stopping"]);
/** Results of the bridge's projection after which the agent is in the event's state. */
const APPLIED = new Set(["state_changed", "in_sync"]);

export function urlFor(urls, name, id) {
  return fillUrl(urls[name], urls.placeholder, id);
}

export function stateBadge(state) {
  return h("span", { className: "agent-state", "data-state": state }, state);
}

/** "2 d 3 h", "4 h 5 min", "6 min 7 s", "8 s" from an ISO time to now (null: "—"). */
export function since(iso, now = Date.now()) {
  if (!iso) return "—";
  let seconds = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  const days = Math.floor(seconds / 86400);
  seconds -= days * 86400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (days) return `${days} d ${hours} h`;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${seconds} s`;
  return `${seconds} s`;
}

/** The state an event leaves the agent in, or null when it does not move it (or the console refused it). */
export function appliedState(event) {
  return event.status && APPLIED.has(event.result) ? event.status : null;
}

/** The newer of two ISO times (either may be null). */
export function newer(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

/** Keep an agent's up_since right when its state moves: a new incarnation starts counting, a dead one stops. */
export function nextUpSince(agent, newState, at) {
  if (!UP_STATES.has(newState)) return null;
  if (!UP_STATES.has(agent.status) || !agent.up_since) return at || new Date().toISOString();
  return agent.up_since;
}

export function yesNo(value) {
  return value === null || value === undefined ? "—" : value ? "yes" : "no";
}

export function orDash(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

/** The bridge's frames and the snapshots carry at most this many characters of a text (agents/texts.py). */
export const PREVIEW_CHARS = 2000;
/** What a table cell shows of a long text before a person asks for all of it. */
const SHORT_CHARS = 300;

/**
 * A text for a table cell: as it is when short; else its start in a <details> whose opening shows
 * all of it. ``length`` is the whole text's length when the page holds only a preview (a snapshot
 * says so); ``mayBeCut`` marks a live frame's text at the bridge's cut, which does not say.
 * ``load()`` fetches the whole text (the agent's text endpoint) the first time it is opened.
 * Always text nodes: nothing here is parsed as HTML.
 */
export function longText(text, { length = null, mayBeCut = false, load = null } = {}) {
  const value = String(text ?? "");
  const whole = length ?? value.length;
  const cut = whole > value.length || (mayBeCut && value.length >= PREVIEW_CHARS);
  if (!cut && value.length <= SHORT_CHARS) return value;
  const label = whole > value.length ? `${whole} characters` : cut ? `${value.length}+ characters` : `${whole} characters`;
  const body = h("div", { className: "long-text-body" }, value);
  const details = h("details", { className: "long-text", "data-cut": cut ? "true" : null },
    h("summary", {}, `${value.slice(0, SHORT_CHARS)}… (${label}: show all)`),
    body,
  );
  if (!cut) return details;
  if (!load) {
    body.append(`\n… the rest is not held here (${whole > value.length ? whole - value.length : "more"} characters).`);
    return details;
  }
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "loading";
    body.textContent = `${value}\n… loading the rest`;
    try {
      const answer = await load();
      body.textContent = answer.text;
      details.dataset.loaded = "true";
    } catch (error) {
      body.textContent = `${value}\n… the rest could not be loaded: ${error.message}`;
      delete details.dataset.loaded;
    }
  });
  return details;
}
