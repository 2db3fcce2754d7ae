/**
 * The supervision tree page: the "find a node" box, an ARIA combobox over the search endpoint.
 * Typing searches after a short pause (an older answer never replaces a newer one); arrows move
 * through the results, Enter or a click opens the path to the node in the tree.
 */

import { getJson, h } from "../mistersmith/live.js";
import { statusBadge, typeText } from "./tree_render.js";

const SEARCH_DELAY_MS = 200;

/**
 * Wire the box: ``input`` (the combobox), ``list`` (its listbox), ``searchUrl`` and the page's
 * ``filters``; ``openPath(id)`` opens a chosen node, ``report(text)`` says what went wrong.
 */
export function startSearch({ input, list, searchUrl, filters, openPath, report }) {
  let timer = null;
  let ticket = 0;
  let searchedFor = null;
  let results = [];
  let activeOption = -1;

  async function runSearch() {
    clearTimeout(timer);
    const text = input.value.trim();
    const mine = ++ticket;
    searchedFor = text;
    if (!text) {
      closeResults();
      return;
    }
    try {
      const answer = await getJson(searchUrl, { q: text, ...filters });
      if (mine === ticket) showResults(answer.results);
    } catch (error) {
      report(`Search failed: ${error.message}.`);
    }
  }

  function showResults(found) {
    results = found;
    activeOption = -1;
    input.removeAttribute("aria-activedescendant");
    const options = found.map((result, index) =>
      h(
        "li",
        { role: "option", id: `tree-search-option-${index}`, "aria-selected": "false", "data-node-id": result.id },
        h("span", { className: "tree-search-name" }, result.name),
        " ",
        statusBadge(result.status),
        " ",
        h("span", { className: "tree-type" }, typeText(result)),
        h("span", { className: "tree-search-path" }, (result.path ?? []).join(" › ")),
      ),
    );
    if (!options.length) options.push(h("li", { className: "tree-search-none", role: "option", "aria-disabled": "true" }, "No node matches."));
    list.replaceChildren(...options);
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function closeResults() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function moveOption(step) {
    if (!results.length) return;
    activeOption = (activeOption + step + results.length) % results.length;
    list.querySelectorAll("[role='option']").forEach((option, index) => {
      option.setAttribute("aria-selected", index === activeOption ? "true" : "false");
    });
    input.setAttribute("aria-activedescendant", `tree-search-option-${activeOption}`);
  }

  async function chooseOption() {
    if (searchedFor !== input.value.trim()) await runSearch();
    const choice = results[Math.max(activeOption, 0)];
    if (!choice) return;
    closeResults();
    await openPath(choice.id);
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(runSearch, SEARCH_DELAY_MS);
  });

  input.addEventListener("keydown", (event) => {
    const actions = {
      ArrowDown: () => moveOption(1),
      ArrowUp: () => moveOption(-1),
      Enter: chooseOption,
      Escape: closeResults,
    };
    if (!actions[event.key]) return;
    event.preventDefault();
    actions[event.key]();
  });

  list.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus in the box
  list.addEventListener("click", (event) => {
    const option = event.target.closest("[data-node-id]");
    if (!option) return;
    closeResults();
    openPath(option.dataset.nodeId);
  });

  input.addEventListener("blur", () => setTimeout(closeResults, 150));
}
