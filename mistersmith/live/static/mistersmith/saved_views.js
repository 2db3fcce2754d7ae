/**
 * The "Views" menu of every live page: save the page's state as its URL holds it (urlState in
 * live.js) under a name, and open or delete the user's own saved views of this page. The list is
 * read when the menu opens; names are put in with textContent (h()), never as HTML.
 */
import { getJson, h } from "./live.js";

const menu = document.getElementById("saved-views");
const form = document.getElementById("saved-views-form");
const list = document.getElementById("saved-views-list");
const statusLine = document.getElementById("saved-views-status");
const itemUrl = (id) => menu.dataset.itemUrl.replace(/\/0\/$/, `/${encodeURIComponent(id)}/`);
const csrfToken = () => form.elements.csrfmiddlewaretoken.value;
const currentQuery = () => window.location.search.replace(/^\?/, "");

async function send(url, method, body = null) {
  const response = await fetch(url, {
    method,
    body,
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error((answer && answer.error) || `${response.status} ${response.statusText}`);
  return answer;
}

function item(view) {
  const current = view.query === currentQuery();
  const remove = h("button", { type: "button", className: "button saved-view-delete" }, "Delete");
  remove.setAttribute("aria-label", `Delete the saved view ${view.name}`);
  remove.addEventListener("click", () => removeView(view));
  return h(
    "li",
    { "data-view-id": view.id },
    h("a", { href: view.url, "aria-current": current ? "page" : null }, view.name),
    " ",
    remove,
  );
}

/** Read the list again; ``done`` (what an action did) is said rather than "no views yet". */
async function refresh(done = "") {
  try {
    const answer = await getJson(menu.dataset.url, { page: window.location.pathname });
    list.replaceChildren(...answer.views.map(item));
    statusLine.textContent = done || (answer.views.length ? "" : "No saved views of this page yet.");
  } catch (problem) {
    statusLine.textContent = `Could not read your saved views: ${problem.message}`;
  }
  menu.dataset.loaded = "true";
}

async function removeView(view) {
  if (!window.confirm(`Delete the saved view "${view.name}"?`)) return;
  let done;
  try {
    await send(itemUrl(view.id), "DELETE");
    done = `Deleted "${view.name}".`;
  } catch (problem) {
    done = `Not deleted: ${problem.message}`;
  }
  await refresh(done);
}

form.addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const name = form.elements.name.value.trim();
  const body = new URLSearchParams({ page: window.location.pathname, name, query: currentQuery() });
  let done;
  try {
    const answer = await send(menu.dataset.url, "POST", body);
    done = `Saved "${answer.view.name}".`;
    form.elements.name.value = "";
  } catch (problem) {
    done = `Not saved: ${problem.message}`;
  }
  await refresh(done);
});

menu.addEventListener("toggle", () => {
  if (menu.open) refresh();
});
