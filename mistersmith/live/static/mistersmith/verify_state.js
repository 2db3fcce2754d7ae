// The state verification page: every few seconds, read the report's JSON and redraw the table
// in place (the scroll position stays; a failed read keeps the last table and says why).
// Every value is written with textContent.

const table = document.getElementById("verify-table");
const rows = document.getElementById("verify-rows");
const statusText = document.getElementById("verify-status");
const counts = document.getElementById("verify-counts");
const checkedAt = document.getElementById("verify-checked-at");
const duration = document.getElementById("verify-duration");
const refreshError = document.getElementById("verify-refresh-error");
const FIELDS = ["component", "check", "expected", "found", "status", "hint"];

function cell(row, field) {
  const td = document.createElement("td");
  if (field === "found" || field === "status" || field === "hint") td.className = field;
  if (field === "status") {
    const icon = document.createElement("img");
    icon.src = table.dataset[`icon${row.status.charAt(0).toUpperCase()}${row.status.slice(1)}`] || "";
    icon.alt = "";
    td.append(icon);
  }
  td.append(document.createTextNode(String(row[field] ?? "")));
  if (field === "hint" && row.fix) {
    // where the fix is (mistersmith/operations/verify/fixes.py): offered only to whom may open it
    const link = document.createElement("a");
    link.className = "verify-fix";
    link.href = row.fix.url;
    link.textContent = row.fix.label;
    td.append(" ", link);
  }
  return td;
}

// The server sends the rows worst first (failed, degraded, then ok): drawn in its order.
function draw(report) {
  rows.replaceChildren(
    ...report.rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.status = row.status;
      tr.append(...FIELDS.map((field) => cell(row, field)));
      return tr;
    }),
  );
  statusText.textContent = report.status;
  statusText.dataset.status = report.status;
  counts.textContent = `${report.counts.ok} ok, ${report.counts.degraded} degraded, ${report.counts.failed} failed`;
  const at = new Date(report.checked_at);
  checkedAt.dateTime = report.checked_at;
  checkedAt.textContent = at.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  duration.textContent = String(Math.round(report.duration_ms));
}

async function refresh() {
  if (document.hidden) return; // nobody is looking: no report is made for nothing
  try {
    const response = await fetch(table.dataset.jsonUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status === 401 || response.status === 403 ? "your session ended: reload the page" : `HTTP ${response.status}`);
    draw(await response.json());
    refreshError.hidden = true;
  } catch (error) {
    refreshError.textContent = `Could not refresh (${error.message}); showing the last report.`;
    refreshError.hidden = false;
  }
}

const seconds = Math.max(2, Number(table.dataset.refreshSeconds) || 10);
setInterval(refresh, seconds * 1000);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
