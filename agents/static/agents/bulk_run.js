/**
 * A bulk run's page: each agent's result from agent_pages:bulk_results, read again every 2 s until
 * the run is done (or interrupted). Values go through h() and textContent, never HTML.
 */
import { fillUrl, getJson, h, readJson } from "../mistersmith/live.js";

const config = readJson("bulk-config");
const progress = document.getElementById("bulk-progress");
const tbody = document.getElementById("bulk-results").querySelector("tbody");
const REFRESH_MS = 2000;
const WORDS = { pending: "pending…", ok: "done", refused: "refused", timeout: "no answer in time", error: "failed", unavailable: "unavailable" };

function render(run) {
  tbody.replaceChildren(
    ...run.results.map((row) =>
      h(
        "tr",
        { "data-agent-id": row.agent_id, "data-outcome": row.outcome },
        h("td", {}, h("a", { href: fillUrl(config.detail, config.placeholder, row.agent_id) }, row.name)),
        h("td", { className: "bulk-outcome", "data-outcome": row.outcome }, WORDS[row.outcome] || row.outcome),
        h("td", {}, row.detail),
      ),
    ),
  );
  const counts = Object.entries(run.counts)
    .map(([outcome, count]) => `${count} ${WORDS[outcome] || outcome}`)
    .join(", ");
  const head = { running: "Running", done: "Done", interrupted: "Interrupted (no result for 2 minutes: the console process may have stopped)" }[run.state];
  progress.textContent = `${head}: ${run.command} of ${run.total} agents — ${counts}.`;
  progress.dataset.state = run.state;
}

async function refresh() {
  try {
    const run = await getJson(config.results);
    render(run);
    if (run.state === "running") setTimeout(refresh, REFRESH_MS);
  } catch (error) {
    progress.textContent = `The results could not be loaded: ${error.message}. Trying again…`;
    setTimeout(refresh, REFRESH_MS * 2);
  }
}

refresh();
