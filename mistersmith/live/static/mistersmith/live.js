/**
 * The live pages' one client: a WebSocket of frames on top of a snapshot loaded over HTTP.
 *
 * Race-free start (DESIGN.md "One event path"): the socket opens and subscribes first; frames
 * that arrive meanwhile are buffered; then the page loads its snapshot, which says up to which
 * stream sequence it reflects ({positions: {STREAM: sequence}}); buffered events at or below
 * that are dropped and the rest applied. After a reconnect the snapshot is loaded again.
 *
 * Reconnects back off 1 s, 2 s, 4 s ... up to 30 s. The badge says "live", "reconnecting"
 * (the first attempts) or "offline" (the browser is offline, or the server stayed away).
 * While the tab is hidden, frames are queued and applied at once when it shows again; a queue
 * that grows too long is dropped for a fresh snapshot instead.
 *
 * Every value from the runtime is shown through textContent (see h()): never as HTML.
 */

export const BACKOFF_FIRST_MS = 1000;
export const BACKOFF_MAX_MS = 30000;
const OFFLINE_AFTER_ATTEMPTS = 5;
const HIDDEN_QUEUE_LIMIT = 5000;

/** An element with attributes and children; strings become text nodes, so they are never parsed as HTML. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** JSON from the console (same-origin cookies); a non-2xx answer throws with the server's error text. */
export async function getJson(url, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();
  const response = await fetch(query ? `${url}?${query}` : url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

/** Read a <script type="application/json"> written by json_script. */
export function readJson(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

/** A URL from a template the server handed over with `placeholder` where an id goes. */
export function fillUrl(template, placeholder, id) {
  return template.replace(placeholder, encodeURIComponent(id));
}

/** A time for people: the browser's local date and time (null gives "—"; text that is no time stays as it is). */
export function timeText(iso) {
  if (!iso) return "—";
  const parsed = new Date(iso);
  return Number.isNaN(parsed.getTime()) ? String(iso) : parsed.toLocaleString();
}

/** A <time> element showing timeText(iso), with the exact ISO time as its datetime and title. */
export function timeElement(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: iso }, timeText(iso));
}

/** Highlight an element that just changed: (re)start the CSS animation of `className`. */
export function flash(element, className = "changed") {
  element.classList.remove(className);
  void element.offsetWidth; // restart the animation
  element.classList.add(className);
}

/** "3 s ago", "5 min ago" ... for an ISO time (null gives "never"). */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** The reconnect delay after `attempt` failures (1-based): 1 s doubling, at most 30 s. */
export function backoffDelay(attempt) {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, attempt - 1));
}

/** Keep the events a snapshot with these positions does not already reflect. */
export function unseenEvents(events, positions) {
  return events.filter(
    (event) =>
      !(event && event.stream && Number.isFinite(event.sequence) && positions && event.stream in positions) ||
      event.sequence > positions[event.stream],
  );
}

// Close codes after which the server refuses this user a socket (consumers.py, socket_session.py):
// 4401 the session or user ended, 4403 not allowed. Reconnecting would only be refused again.
const ENDED_CODES = new Set([4401, 4403]);

/**
 * The (stream, sequence) of the events a page applied, per topic: frames are at least once (a new
 * leading bridge frames again what the dead one may not have sent, see mistersmith/live/bridge.py), so an
 * event may come twice; the second is dropped. Exact, not "highest so far": a message redelivered
 * after its ack wait comes behind newer ones and must still be applied once. The newest `limit`
 * per topic are remembered (repeats come within a few batches).
 */
export class SeenEvents {
  constructor(limit = 20000) {
    this.limit = limit;
    this.byTopic = new Map();
  }

  /** The events of a frame not applied before (events without a stream sequence always pass). */
  fresh(topic, events) {
    if (!this.byTopic.has(topic)) this.byTopic.set(topic, new Set());
    const seen = this.byTopic.get(topic);
    const kept = events.filter((event) => {
      if (!(event && event.stream && Number.isFinite(event.sequence))) return true;
      const key = `${event.stream}#${event.sequence}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    for (const key of seen) {
      if (seen.size <= this.limit) break;
      seen.delete(key); // a Set iterates in insertion order: the oldest first
    }
    return kept;
  }
}

export class LiveConnection {
  /**
   * @param {object} options
   * @param {string[]} options.topics          topics to subscribe to
   * @param {object} [options.filters]         per-topic filters (see mistersmith/live/consumer.py)
   * @param {() => Promise<object|void>} options.loadSnapshot  loads and renders the snapshot; returns {positions}
   * @param {(topic: string, events: object[]) => void} options.applyEvents  applies live events
   * @param {HTMLElement} [options.badge]      the element that shows the connection state
   * @param {string} [options.path]            the socket's path
   */
  constructor({ topics, filters = null, loadSnapshot, applyEvents, badge = null, path = "/ws/live/" }) {
    this.topics = topics;
    this.filters = filters;
    this.loadSnapshot = loadSnapshot;
    // The page applies the events, then anyone else on the page may hear them (actions.js: a restart's outcome).
    this.applyEvents = (topic, events) => {
      applyEvents(topic, events);
      window.dispatchEvent(new CustomEvent("mistersmith:frame", { detail: { topic, events } }));
    };
    this.badge = badge || document.getElementById("live-badge");
    this.path = path;
    this.state = "connecting";
    this.attempts = 0;
    this.socket = null;
    this.buffer = null; // frames received while a snapshot loads
    this.hidden = []; // frames received while the tab is hidden
    this.hiddenOverflow = false;
    this.stopped = false;
    this.timer = null;
    this.snapshots = 0; // how many snapshots were loaded (pages and tests read it)
    this.bridgeAway = false; // the server said its bridge lost the runtime's streams
    this.seen = new SeenEvents(); // events repeated after a bridge takeover are applied once
    document.addEventListener("visibilitychange", () => this.flushHidden());
    window.addEventListener("offline", () => {
      this.show("offline");
      if (this.socket) this.socket.close();
    });
    window.addEventListener("online", () => this.reconnectNow());
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
  }

  /** Change the subscription (e.g. a new filter): a fresh socket and a fresh snapshot. */
  resubscribe({ topics = this.topics, filters = this.filters } = {}) {
    this.topics = topics;
    this.filters = filters;
    this.reconnectNow();
  }

  reconnectNow() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.attempts = 0;
    const old = this.socket;
    this.socket = null;
    if (old) {
      old.onclose = null;
      old.close();
    }
    this.connect();
  }

  show(state, detail = "") {
    this.state = state;
    if (!this.badge) return;
    const labels = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
    this.badge.dataset.state = state;
    this.badge.textContent = labels[state] || state;
    this.badge.title = detail;
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${this.path}`);
    this.socket = socket;
    this.buffer = [];
    this.bridgeAway = false; // a new socket hears the bridge's next change; until then it trusts the server
    if (this.state !== "reconnecting" && this.state !== "offline") this.show("connecting");
    socket.onopen = () => {
      const message = { subscribe: this.topics };
      if (this.filters) message.filters = this.filters;
      socket.send(JSON.stringify(message));
    };
    socket.onmessage = (message) => this.receive(socket, JSON.parse(message.data));
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (ENDED_CODES.has(event.code)) {
        // The session or the user no longer allows this socket: a new one would be refused too.
        this.stopped = true;
        this.show("offline", event.reason || "Your session has ended; log in again.");
        return;
      }
      this.scheduleReconnect();
    };
  }

  async receive(socket, message) {
    if (message.subscribed) {
      await this.reloadSnapshot(socket);
    } else if (message.bridge) {
      this.bridgeStatus(socket, message.bridge.connected);
    } else if (message.error) {
      this.show("offline", message.error);
    } else if (message.left) {
      // Topics the user may no longer see: their events stop, so the page is no longer live.
      this.topics = this.topics.filter((topic) => !message.left.includes(topic));
      this.show("offline", `${message.reason} (${message.left.join(", ")})`);
    } else if (message.topic) {
      if (this.buffer !== null) this.buffer.push(message);
      else this.deliver(message);
    }
  }

  /** The server's bridge lost the runtime's streams (no event can come: not "live"), or has them
   * again: then the snapshot is loaded again, and the events it missed arrive as frames. */
  bridgeStatus(socket, connected) {
    if (socket !== this.socket) return;
    if (!connected) {
      this.bridgeAway = true;
      this.show("reconnecting", "The console lost the runtime's event streams; it catches up when they are back.");
    } else if (this.bridgeAway) {
      this.bridgeAway = false;
      this.reloadSnapshot(socket);
    }
  }

  async reloadSnapshot(socket) {
    this.buffer = this.buffer || [];
    let positions = {};
    try {
      const snapshot = await this.loadSnapshot();
      positions = (snapshot && snapshot.positions) || {};
      this.snapshots += 1;
    } catch (error) {
      this.buffer = null;
      this.show("reconnecting", `The snapshot did not load: ${error.message}`);
      socket.close();
      return;
    }
    const buffered = this.buffer;
    this.buffer = null;
    for (const frame of buffered) {
      const events = unseenEvents(frame.events, positions);
      if (events.length) this.deliver({ ...frame, events });
    }
    if (socket === this.socket && !this.bridgeAway) {
      this.attempts = 0;
      this.show("live", `Subscribed to ${this.topics.join(", ")}`);
    }
  }

  deliver(frame) {
    const events = this.seen.fresh(frame.topic, frame.events || []);
    if (frame.events && frame.events.length && !events.length) return; // all of it applied already
    frame = { ...frame, events };
    if (document.hidden) {
      if (this.hiddenOverflow) return;
      this.hidden.push(frame);
      if (this.hidden.reduce((n, f) => n + f.events.length, 0) > HIDDEN_QUEUE_LIMIT) {
        this.hidden = [];
        this.hiddenOverflow = true; // cheaper to reload the snapshot than to replay all of it
      }
      return;
    }
    this.applyEvents(frame.topic, frame.events);
  }

  /** The tab shows again: apply what was queued, one call per topic, or reload the snapshot. */
  flushHidden() {
    if (document.hidden) return;
    if (this.hiddenOverflow) {
      this.hiddenOverflow = false;
      if (this.socket) this.reloadSnapshot(this.socket);
      return;
    }
    const byTopic = new Map();
    for (const frame of this.hidden) {
      if (!byTopic.has(frame.topic)) byTopic.set(frame.topic, []);
      byTopic.get(frame.topic).push(...frame.events);
    }
    this.hidden = [];
    for (const [topic, events] of byTopic) this.applyEvents(topic, events);
  }

  scheduleReconnect() {
    if (this.stopped) return;
    this.attempts += 1;
    const delay = backoffDelay(this.attempts);
    const offline = !navigator.onLine || this.attempts > OFFLINE_AFTER_ATTEMPTS;
    this.nextAttemptAt = Date.now() + delay;
    this.show(offline ? "offline" : "reconnecting", `Next attempt in ${Math.round(delay / 1000)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

/** Start a page's connection and keep it reachable for debugging and tests as window.misterSmithLive. */
export function startLive(options) {
  const live = new LiveConnection(options).start();
  window.misterSmithLive = live;
  return live;
}

/* ---- links to agents (mistersmith/web/links.py: the same rule and URL templates) -------------- */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const AGENT_SUBJECT = /^(?:supervision\.)?agent\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\./i;

/** The agent a subject is about (agent.<uuid>.events, supervision.agent.<uuid>.…), or null. */
export function agentIdInSubject(subject) {
  const found = AGENT_SUBJECT.exec(subject || "");
  return found ? found[1].toLowerCase() : null;
}

/**
 * An agent id as links: the id to its live page, then a "tree" mark to its place in the supervision tree.
 * `templates` is the page's agent_link_templates() (null: the user may not view agents, so the
 * bare id; a null `tree`: no tree link). `text` replaces the id as the first link's text.
 */
export function agentLinks(id, templates, text = null) {
  const label = text ?? id;
  if (!id || !templates || !UUID.test(id)) return h("span", {}, label ?? "—");
  const url = (template) => template.replace(templates.placeholder, id);
  const links = [h("a", { href: url(templates.detail), className: "agent-link" }, label)];
  if (templates.tree) {
    // Its words come from CSS (live.css): the id's text around it stays what it was (a subject reads whole).
    const title = "Its place in the supervision tree";
    links.push(h("a", { href: url(templates.tree), className: "agent-tree-link", title, "aria-label": title }));
  }
  return h("span", { className: "agent-links", "data-agent-id": id }, ...links);
}

/** A subject with the agent it names made links (the subject itself stays as text around them). */
export function subjectWithAgentLinks(subject, templates) {
  const id = agentIdInSubject(subject);
  if (!id || !templates) return subject;
  const at = subject.toLowerCase().indexOf(id);
  return h("span", {}, subject.slice(0, at), agentLinks(id, templates, subject.slice(at, at + id.length)), subject.slice(at + id.length));
}
