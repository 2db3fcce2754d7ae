// The policy form's backtest panel: per period, what the saved policy and the values being edited
// would have done with the node's recorded failures, and the crash-loop lint of the edited values.
// The figures come from the server (supervision/backtest.py replays the failures through the
// runtime's own SQL rules); this script only sends the form's values and shows the answer.
(function () {
  "use strict";
  const FIELDS = [
    "supervision_strategy",
    "max_restarts",
    "time_window_seconds",
    "backoff_strategy",
    "backoff_factor",
    "min_restart_delay_ms",
    "max_restart_delay_ms",
  ];

  function field(group, name) {
    return group.querySelector(`[name="${name}"], [name$="-${name}"]`);
  }

  function formValues(group) {
    const inputs = FIELDS.map((name) => field(group, name));
    if (inputs.some((input) => !input)) return null; // read-only: the saved policy only
    const pairs = FIELDS.map((name, i) => [name, inputs[i].value]);
    const limit = field(group, "escalate_on_limit");
    pairs.push(["escalate_on_limit", limit && limit.checked ? "true" : "false"]);
    group
      .querySelectorAll('input[name="escalate_on_error_types"]:checked, input[name$="-escalate_on_error_types"]:checked')
      .forEach((box) => pairs.push(["escalate_on_error_types", box.value]));
    return pairs;
  }

  function describe(figures) {
    if (!figures) return "no saved policy";
    const parts = [
      `${figures.restarts} restart${figures.restarts === 1 ? "" : "s"}`,
      `${figures.escalations} escalation${figures.escalations === 1 ? "" : "s"}`,
      `${figures.delay_seconds} s of restart delay`,
    ];
    if (figures.left) parts.push(`${figures.left} left unhandled`);
    return `${parts.join(", ")} (${figures.failures} failure${figures.failures === 1 ? "" : "s"})`;
  }

  function periodOf(result, days) {
    return result ? result.periods.find((period) => period.days === days) : null;
  }

  function cutNote(result) {
    return result && result.replayed_since ? ` — replayed from ${result.replayed_since} (the newest failures only)` : "";
  }

  function render(panel, body) {
    const edited = body.edited || body.saved;
    panel.querySelectorAll("tr[data-days]").forEach((row) => {
      const days = Number(row.dataset.days);
      row.querySelector("td.saved").textContent = describe(periodOf(body.saved, days)) + cutNote(body.saved);
      row.querySelector("td.edited").textContent = edited
        ? describe(periodOf(edited, days)) + cutNote(edited)
        : "no saved policy";
    });
    const list = panel.querySelector("ul.policy-lint");
    list.replaceChildren(
      ...body.lint.map((warning) => {
        const item = document.createElement("li");
        item.className = "warning";
        item.dataset.rule = warning.rule;
        item.textContent = warning.message;
        return item;
      })
    );
  }

  function showProblem(panel, text) {
    panel.querySelectorAll("tr[data-days] td.edited").forEach((cell) => {
      cell.textContent = text;
    });
    panel.querySelector("ul.policy-lint").replaceChildren();
  }

  function attach(panel) {
    const url = panel.dataset.backtestUrl;
    const group = panel.closest(".inline-related, form");
    if (!url || !group) return;
    let pending;
    let asked = 0;
    const refresh = () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const nodeInput = field(group, "node");
        const node = (nodeInput && nodeInput.value) || panel.dataset.node;
        if (!node) {
          showProblem(panel, "Choose a node: the backtest replays its failures.");
          return;
        }
        const values = formValues(group) || [];
        const query = new URLSearchParams([["node", node], ...values]);
        const ticket = ++asked;
        panel.classList.add("loading");
        let response;
        try {
          response = await fetch(`${url}?${query}`, { credentials: "same-origin" });
        } catch (error) {
          if (ticket === asked) showProblem(panel, "The console did not answer; the backtest will retry on the next change.");
          return;
        }
        if (ticket !== asked) return; // a newer question is on its way
        panel.classList.remove("loading");
        const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
        panel.classList.toggle("errors", !response.ok);
        panel.dataset.state = response.ok ? "ready" : "error";
        if (response.ok && body) render(panel, body);
        else showProblem(panel, (body && body.error) || `The backtest failed (${response.status}).`);
      }, 250);
    };
    group.addEventListener("input", refresh);
    group.addEventListener("change", refresh);
    const nodeInput = field(group, "node");
    if (nodeInput && window.django && window.django.jQuery) {
      window.django.jQuery(nodeInput).on("change", refresh); // the autocomplete widget's own event
    }
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("div.policy-backtest[data-backtest-url]").forEach(attach);
  });
  document.addEventListener("formset:added", (event) => {
    event.target.querySelectorAll("div.policy-backtest[data-backtest-url]").forEach(attach);
  });
})();
