/**
 * The supervision tree page: the panel of the selected node (its details, actions, policy, child
 * states, recent failures and restarts), loaded from the node endpoint. Parts the user may not
 * see come empty with the sentence the server gives (``hidden``).
 */

import { getJson, h, timeElement } from "../mistersmith/live.js";
import { budgetLine, childStatesText, childrenText, failuresInWindow, policySummary, restartsText, statusBadge, typeText } from "./tree_render.js";

function link(href, text, className = null) {
  return href ? h("a", { href, className }, text) : null;
}

function section(title, ...content) {
  return h("section", { className: "tree-panel-section" }, h("h3", {}, title), ...content);
}

/** A table that becomes cards on a phone (live.css): each cell carries its column's heading. */
function table(headings, rows, empty) {
  if (!rows.length) return h("p", { className: "tree-quiet" }, empty);
  return h(
    "table",
    { className: "card-table" },
    h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, heading)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, index) => h("td", { "data-label": headings[index] }, cell))))),
  );
}

/** Where the panel sits below the tree (tree.css's one-column layout): a phone or a narrow window. */
const PANEL_BELOW_TREE = window.matchMedia("(max-width: 1024px)");

/** A restart's or a failure's yes/no, where no answer yet means the runtime has not said. */
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
    ["Restart budget", budgetLine(node)],
    ["Restarts", restartsText(node)],
    ["Last failure", node.last_failure_at ? timeElement(node.last_failure_at) : "none"],
    ["Updated", timeElement(node.updated_at)],
  ];
  if (node.terminated_at) entries.push(["Terminated", timeElement(node.terminated_at)]);
  return h("dl", { className: "tree-details" }, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/**
 * The panel in ``element``. ``nodeUrl(id)``: the node endpoint's URL; ``remember(node)``: hands
 * the page the node's JSON the panel loaded (the tree keeps the latest of each node).
 * ``fill(template, id)``: a URL template of the server's with the id in place of its placeholder.
 * Returns {show(id, {reveal}): load and draw a node (with ``reveal``, where the panel sits below
 * the tree, scroll it into view: the user just chose the node), redrawNode(node): redraw the parts
 * drawn from the node's own JSON, when it is the one shown}.
 */
export function createPanel(element, { nodeUrl, beforeFailureUrl, remember, fill }) {
  let ticket = 0;

  function redrawNode(node) {
    const target = element.querySelector(".tree-panel-node");
    if (!target || target.dataset.nodeId !== node.id) return;
    target.replaceChildren(h("h2", {}, node.name), details(node));
  }

  function render({ node, failures, restarts, child_states: childStates, links, hidden = {} }) {
    remember(node);
    const nodePart = h("div", { className: "tree-panel-node", "data-node-id": node.id });
    const policyLinkText = node.policy ? "Change the policy" : "Add a policy";
    element.replaceChildren(
      nodePart,
      section(
        "Actions",
        h(
          "ul",
          { className: "tree-actions" },
          h("li", {}, link(links.change, "Change this node in the admin")),
          links.restart ? h("li", {}, link(links.restart, "Restart…", "tree-restart")) : null,
          h("li", {}, link(links.tree, "Link to this node in the tree")),
          links.now && links.now !== links.tree ? h("li", {}, link(links.now, "This node now", "tree-node-now")) : null,
          links.agent ? h("li", {}, link(links.agent, "Its agent's live page", "tree-agent-link")) : null,
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
          ["When", "Reason", "Detail", "Restart attempted", "Escalated", "Story", "Tree"],
          failures.map((failure) => [
            timeElement(failure.occurred_at),
            failure.failure_reason,
            failure.failure_detail,
            yesNo(failure.restart_attempted),
            yesNo(failure.escalated_to_parent),
            // links.incident: the failure's story page, a URL template to fill with its id
            link(links.incident ? fill(links.incident, failure.id) : null, "Incident", "tree-incident-link") ?? "",
            link(beforeFailureUrl(node.id, failure.occurred_at), "5 minutes before this failure", "tree-before-failure"),
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
    redrawNode(node);
  }

  async function show(id, { reveal = false } = {}) {
    const mine = ++ticket;
    element.setAttribute("aria-busy", "true");
    try {
      const answer = await getJson(nodeUrl(id));
      if (mine === ticket) render(answer);
    } catch (error) {
      if (mine === ticket) element.replaceChildren(h("p", { className: "errornote" }, `Could not load the node: ${error.message}.`));
    } finally {
      if (mine === ticket) {
        element.removeAttribute("aria-busy");
        if (reveal && PANEL_BELOW_TREE.matches) element.scrollIntoView({ block: "start" });
      }
    }
  }

  return { show, redrawNode };
}
