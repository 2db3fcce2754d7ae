/**
 * What became of the actions this person started, on every live page (live_base.html): restarts
 * (pending → succeeded, failed or timed out) and bulk agent commands (their counts as they come).
 *
 * The list is the server's (actions:mine, mistersmith/console/actions: the user's own restarts and
 * bulk runs of the last 30 minutes), so it follows the person from page to page, tab to tab, and
 * survives a reload; only "dismissed" is kept in the browser (localStorage). It is read again when a
 * frame of the page's own socket says a restart moved ("mistersmith:frame", from live.js), and every
 * few seconds while something is still pending (a page whose socket does not carry the
 * "supervision" topic, and restarts that time out: the bridge's sweep sends no frame).
 *
 * Marks: the rows of nodes with such a restart (the tree's, the admin's node list, where a bulk
 * restart starts and ends) get its state; other pages hear the
 * "mistersmith:actions" event (the agents list reloads its command marks when a bulk run moved on).
 * Everything is text through h(), never HTML.
 */
import { getJson, h } from "./live.js";

const POLL_MS = 3000;
const DISMISSED_KEY = "mistersmith.dismissedActions";
const SHOWN = 5;
const root = document.getElementById("action-notices");
const RESTART_WORDS = {
  pending: "requested, waiting for the runtime…",
  succeeded: "succeeded",
  failed: "failed",
  timed_out: "timed out (no answer from the runtime)",
};
const MARK_WORDS = { pending: "restarting…", succeeded: "restarted", failed: "restart failed", timed_out: "restart timed out" };
const BULK_WORDS = { ok: "done", refused: "refused", timeout: "no answer", error: "failed", unavailable: "unavailable", pending: "pending" };

let latest = { restarts: [], bulk: [] };
let pollTimer = null;
let soonTimer = null;

function dismissed() {
  try {
    return new Set(JSON.parse(localStorage.getItem(DISMISSED_KEY) || "[]"));
  } catch {
    return new Set();
  }
}

function dismiss(id) {
  const ids = [...dismissed(), id].slice(-200);
  localStorage.setItem(DISMISSED_KEY, JSON.stringify(ids));
  render();
}

function restartNotice(restart) {
  const text = `Restart of ${restart.node_name} ${RESTART_WORDS[restart.state] || restart.state}`;
  return [
    h("span", { className: "action-text" }, restart.state === "failed" && restart.error ? `${text}: ${restart.error}` : `${text}.`),
    restart.record_url ? h("a", { href: restart.record_url, className: "action-record" }, "Restart record") : null,
    h("a", { href: restart.tree_url }, "In the tree"),
  ];
}

function bulkNotice(run) {
  const counts = Object.entries(run.counts)
    .map(([outcome, count]) => `${count} ${BULK_WORDS[outcome] || outcome}`)
    .join(", ");
  const head = { running: "running", done: "done", interrupted: "interrupted" }[run.state] || run.state;
  return [
    h("span", { className: "action-text" }, `Bulk ${run.command} of ${run.total} agents ${head}: ${counts}.`),
    h("a", { href: run.url }, "Results"),
  ];
}

function render() {
  if (!root) return;
  const hidden = dismissed();
  const items = [
    ...latest.restarts.map((restart) => ({ id: restart.id, state: restart.state, parts: restartNotice(restart), kind: "restart" })),
    ...latest.bulk.map((run) => ({ id: run.id, state: run.state, parts: bulkNotice(run), kind: "bulk" })),
  ].filter((item) => !hidden.has(item.id));
  const shown = items.slice(0, SHOWN);
  const more = items.length > SHOWN ? [h("li", { className: "action-notice action-more" }, `and ${items.length - SHOWN} more`)] : [];
  root.replaceChildren(
    ...shown.map((item) =>
      h(
        "li",
        { className: "action-notice", "data-action-id": item.id, "data-action-kind": item.kind, "data-action-state": item.state },
        ...item.parts,
        h("button", { type: "button", className: "action-dismiss", "aria-label": "Dismiss", onclick: () => dismiss(item.id) }, "×"),
      ),
    ),
    ...more,
  );
  root.hidden = shown.length === 0;
  markRows();
}

/** Where a node's mark goes: its tree row's title, or its row of the admin's node list (the bulk restart's page). */
function markPlace(nodeId) {
  const id = CSS.escape(nodeId);
  const item = document.querySelector(`#supervision-tree [data-node-id="${id}"]`);
  if (item) return item.querySelector(".tree-title");
  const box = document.querySelector(`#result_list input.action-select[value="${id}"]`);
  const row = box && box.closest("tr");
  return row ? row.querySelector("th") || row.cells[1] || null : null;
}

/** The rows of the user's restarted nodes (tree, node list) carry the newest restart's state. */
function markRows() {
  const newest = new Map();
  for (const restart of latest.restarts) if (!newest.has(restart.node_id)) newest.set(restart.node_id, restart);
  for (const [nodeId, restart] of newest) {
    const title = markPlace(nodeId);
    if (!title) continue;
    const mark = title.querySelector(":scope > .action-mark");
    if (mark && mark.dataset.actionState === restart.state) continue;
    const attributes = { className: "action-mark", "data-action-state": restart.state, title: restart.error || MARK_WORDS[restart.state] };
    const next = restart.record_url
      ? h("a", { ...attributes, href: restart.record_url }, MARK_WORDS[restart.state])
      : h("span", attributes, MARK_WORDS[restart.state]);
    if (mark) mark.replaceWith(next);
    else title.append(next);
  }
}

async function refresh() {
  clearTimeout(pollTimer);
  pollTimer = null;
  try {
    latest = await getJson(root.dataset.url);
  } catch {
    pollTimer = setTimeout(refresh, POLL_MS * 2); // the page's own badge says why the server is away
    return;
  }
  render();
  window.dispatchEvent(new CustomEvent("mistersmith:actions", { detail: latest }));
  const waiting = latest.restarts.some((r) => r.state === "pending") || latest.bulk.some((run) => run.state === "running");
  if (waiting) pollTimer = setTimeout(refresh, POLL_MS);
}

function refreshSoon() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(refresh, 100); // a burst of frames, one request
}

if (root) {
  window.addEventListener("mistersmith:frame", (event) => {
    const { topic, events } = event.detail;
    if (topic === "supervision" && events.some((e) => e.kind === "restart_completed" || e.kind === "restart_requested")) refreshSoon();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshSoon();
  });
  const tree = document.getElementById("supervision-tree");
  if (tree) {
    let queued = false;
    new MutationObserver(() => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        markRows();
      });
    }).observe(tree, { childList: true, subtree: true });
  }
  refresh();
}
