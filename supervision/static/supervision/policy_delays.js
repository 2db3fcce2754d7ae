// Live preview of a policy's restart delays while its form is edited.
// The numbers come from the server (supervision.rules), the one place the rule is written.
(function () {
  "use strict";
  const FIELDS = ["backoff_strategy", "backoff_factor", "min_restart_delay_ms", "max_restart_delay_ms"];

  function render(table, delays) {
    const rows = delays.map((delay, index) => {
      const row = document.createElement("tr");
      for (const text of [String(index + 1), `${delay} ms`]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      return row;
    });
    const header = table.querySelector("tr");
    table.replaceChildren(header, ...rows);
  }

  function attach(table) {
    const url = table.dataset.previewUrl;
    const group = table.closest("fieldset, .inline-related, form");
    if (!url || !group) return;
    const inputs = FIELDS.map((name) => group.querySelector(`[name$="${name}"]`));
    if (inputs.some((input) => !input)) return;
    let pending;
    const refresh = () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const query = new URLSearchParams(FIELDS.map((name, i) => [name, inputs[i].value]));
        const response = await fetch(`${url}?${query}`, { credentials: "same-origin" });
        if (!(response.headers.get("content-type") || "").includes("json")) return;
        const body = await response.json();
        table.classList.toggle("errors", !response.ok);
        if (response.ok) render(table, body.delays);
        table.title = response.ok ? "" : Object.values(body.errors).flat().join(" ");
      }, 150);
    };
    inputs.forEach((input) => input.addEventListener("input", refresh));
    inputs.forEach((input) => input.addEventListener("change", refresh));
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("table.restart-delays[data-preview-url]").forEach(attach);
  });
})();
