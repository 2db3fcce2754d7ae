// The policy form shows the backoff factor only where it acts: with Exponential backoff.
// Progressive enhancement: without this script the field is always shown, and the server
// refuses a changed factor with another backoff (supervision/policy_form.py), saying why.
(function () {
  "use strict";

  function attach(factor) {
    const group = factor.closest("fieldset, .inline-related, form");
    const strategy = group && group.querySelector('select[name$="backoff_strategy"]');
    const row = factor.closest(".form-row, .fieldBox");
    if (!strategy || !row) return;
    const acts = factor.dataset.actsWith;
    const update = () => {
      const shown = strategy.value === acts;
      if (!shown) factor.value = factor.defaultValue; // the value loaded: an unused factor is not changed
      row.hidden = !shown;
      row.style.display = shown ? "" : "none"; // the admin's own rules may set a display
      row.dataset.factorHidden = shown ? "false" : "true";
    };
    strategy.addEventListener("change", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("input[data-acts-with]").forEach(attach);
  });
  // The node page's "add another supervision policy" copies an empty form in.
  document.addEventListener("formset:added", (event) => {
    event.target.querySelectorAll("input[data-acts-with]").forEach(attach);
  });
})();
