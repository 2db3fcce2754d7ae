/**
 * The supervision tree page, live: events on the "supervision" topic name nodes (or agents of
 * nodes); the rows of those the page shows are fetched again from the nodes endpoint and redrawn,
 * a burst of events becoming one request. The snapshot of a live tree is the nodes it shows,
 * fetched again (after every reconnect too).
 */

import { flash, getJson, startLive } from "../mistersmith/live.js";

const REFRESH_DELAY_MS = 150; // events of one burst become one request
const REFRESH_CHUNK = 500; // the server's limit per request

/**
 * Start the page's connection. ``view`` is what the tree shows: ``shownIds()`` (the nodes drawn),
 * ``has(id)``, ``nodeOf(id)`` (its latest JSON), ``itemOf(id)`` (its element), ``renderNode(node)``,
 * ``selectedId()`` and ``showPanel(id)``.
 */
export function startTreeLive(nodesUrl, view) {
  const staleNodes = new Set();
  const staleAgents = new Set();
  let refreshTimer = null;

  function queueRefresh(topic, events) {
    for (const event of events) {
      if (event.node_id) staleNodes.add(event.node_id);
      if (event.agent_id) staleAgents.add(event.agent_id);
      if (event.supervisor_id) staleNodes.add(event.supervisor_id);
    }
    scheduleRefresh();
  }

  function scheduleRefresh() {
    if (refreshTimer === null && (staleNodes.size || staleAgents.size)) {
      refreshTimer = setTimeout(refreshStale, REFRESH_DELAY_MS);
    }
  }

  async function refreshStale() {
    refreshTimer = null;
    const drawn = [...staleNodes].filter((id) => view.has(id)); // nodes not on this page need nothing
    const nodes = drawn.slice(0, REFRESH_CHUNK);
    const agents = [...staleAgents].slice(0, REFRESH_CHUNK);
    staleNodes.clear();
    drawn.slice(REFRESH_CHUNK).forEach((id) => staleNodes.add(id)); // the rest: the next request
    agents.forEach((id) => staleAgents.delete(id));
    if (nodes.length || agents.length) await redraw(nodes, agents);
    if (staleNodes.size || staleAgents.size) refreshTimer = setTimeout(refreshStale, REFRESH_DELAY_MS);
  }

  async function redraw(nodeIds, agentIds = []) {
    const answer = await getJson(nodesUrl, { ids: nodeIds.join(","), agents: agentIds.join(",") });
    for (const node of answer.nodes) {
      if (view.has(node.id)) {
        const before = view.nodeOf(node.id);
        view.renderNode(node);
        // The parent's summary counts its children by status: redraw it too when this one's moved.
        if (before && before.status !== node.status && node.parent_id && view.has(node.parent_id)) {
          staleNodes.add(node.parent_id);
          scheduleRefresh();
        }
        flash(view.itemOf(node.id), "tree-updated");
      }
    }
    const selected = view.selectedId();
    if (selected && nodeIds.includes(selected)) view.showPanel(selected);
    return answer;
  }

  async function refreshShownNodes() {
    const ids = view.shownIds();
    let positions = {};
    for (let index = 0; index < ids.length || index === 0; index += REFRESH_CHUNK) {
      const answer = await redraw(ids.slice(index, index + REFRESH_CHUNK));
      positions = answer.positions;
    }
    return { positions };
  }

  return startLive({ topics: ["supervision"], loadSnapshot: refreshShownNodes, applyEvents: queueRefresh });
}
