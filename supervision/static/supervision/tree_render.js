/**
 * The supervision tree page: how a node's JSON is drawn, as text (the tree's rows, the panel and
 * the search results use the same words). Pure functions of the data: no page state here.
 */

import { h, timeElement } from "../mistersmith/live.js";

export function typeText(node) {
  return node.detail ? `${node.type} · ${node.detail}` : node.type;
}

/** Status as text and colour: the word is always there, the colour only repeats it. */
export function statusBadge(status) {
  return h("span", { className: `tree-status-badge tree-status-${status}` }, status);
}

export function policySummary(policy) {
  if (!policy) return "no policy";
  if (policy.hidden) return "a policy (hidden: you may not view supervision policies)";
  const factor = policy.backoff === "Exponential" && policy.backoff_factor ? ` ×${policy.backoff_factor}` : "";
  return (
    `${policy.strategy}, max ${policy.max_restarts} restarts / ${policy.window_seconds} s, ` +
    `${policy.backoff}${factor} ${policy.min_delay_ms}–${policy.max_delay_ms} ms`
  );
}

export function failuresInWindow(node) {
  if (!node.policy) return h("span", {}, "– (no policy window)");
  if (node.policy.hidden) return h("span", {}, `${node.failures_in_window} in the policy's window`);
  const text = `${node.failures_in_window} of ${node.policy.max_restarts} in ${node.policy.window_seconds} s`;
  if (node.restart_allowed) return h("span", {}, text);
  return h("span", { className: "tree-alert" }, `${text}, restart limit reached`);
}

/**
 * The restart budget (supervision/budgets.py): "3/5" restarts used of the policy's maximum in its
 * window, coloured by state; none without a policy (the runtime would not restart the node).
 */
export function budgetBadge(node) {
  const budget = node.budget;
  if (!budget || budget.hidden) return null;
  const title = budget.escalates ? `restart budget: ${escalationText(budget)}` : `restart budget: ${budget.used} of ${budget.max} used in ${budget.window_seconds} s`;
  return h("span", { className: `tree-budget tree-budget-${budget.state}`, title }, `${budget.used}/${budget.max}`);
}

function escalationText(budget) {
  const target = budget.escalates_to ? budget.escalates_to.name : "beyond the root (no parent node)";
  return `one more failure escalates to ${target}`;
}

/** The budget in words: used of max, when the window frees the next slot, and the escalation warning. */
export function budgetLine(node) {
  const budget = node.budget;
  if (!budget) return h("span", {}, "no budget (no policy: the runtime would not restart this node)");
  if (budget.hidden) return h("span", {}, "hidden: you may not view supervision policies");
  const parts = [h("span", {}, `${budget.used} of ${budget.max} restarts used in ${budget.window_seconds} s`)];
  if (!budget.allowed) parts.push(h("span", { className: "tree-alert" }, " (no restart left)"));
  if (budget.next_slot_at) parts.push(h("span", {}, "; next slot frees at "), timeElement(budget.next_slot_at));
  if (budget.escalates) {
    parts.push(h("strong", { className: "tree-alert tree-budget-warning" }, `; ${escalationText(budget)}`));
  }
  return h("span", { className: "tree-budget-line" }, ...parts);
}

export function restartsText(node) {
  return node.restarts_capped ? `${node.restarts}+` : String(node.restarts);
}

/** The child nodes the tree lists under this node, by status: the counts add up to the children shown. */
export function childrenText(node) {
  const statuses = Object.entries(node.child_statuses ?? {})
    .filter(([, count]) => count > 0)
    .map(([status, count]) => `${status} ${count}`);
  const children = node.child_count === 1 ? "1 child" : `${node.child_count} children`;
  return statuses.length ? `${children} (${statuses.join(", ")})` : children;
}

/** The runtime's child-state rows (supervision_child_states), another set than the child nodes. */
export function childStatesText(node) {
  const states = Object.entries(node.child_states)
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${state} ${count}`);
  return states.length ? states.join(", ") : "none";
}

function fact(label, ...value) {
  return h("span", { className: "tree-fact" }, h("span", { className: "tree-fact-label" }, `${label}: `), ...value);
}

/** A node's row in the tree: its name (a link to ``changeUrl``, its admin page) and its facts. */
export function renderRow(node, changeUrl) {
  return h(
    "div",
    { className: "tree-row" },
    h("span", { className: "tree-toggle", "aria-hidden": "true" }),
    h(
      "span",
      { className: "tree-title" },
      h("a", { className: "tree-name", href: changeUrl, tabindex: "-1" }, node.name),
      h("span", { className: "tree-type" }, typeText(node)),
      statusBadge(node.status),
      budgetBadge(node),
      node.agent ? h("span", { className: "tree-agent" }, `agent ${node.agent.name ?? node.agent.id}`) : null,
    ),
    h(
      "span",
      { className: "tree-facts" },
      fact("policy", policySummary(node.policy)),
      fact("failures in window", failuresInWindow(node)),
      fact("restarts", restartsText(node)),
      fact("last failure", node.last_failure_at ? timeElement(node.last_failure_at) : "none"),
      fact("children", childrenText(node)),
      fact("child states", childStatesText(node)),
    ),
  );
}
