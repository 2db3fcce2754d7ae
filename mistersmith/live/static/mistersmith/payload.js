/**
 * Payloads a person can read, shared by the live pages (event log, agent history): a row's
 * "Payload" button opens the whole message as pretty JSON (fetched when first opened, pretty-printed
 * by the server: mistersmith/jetstream/messages.py readable_payload) with a Copy button; a
 * predicate for heartbeats, which pages can hide; and the URL query flag that keeps that choice.
 *
 * The payload is put in the page with textContent (h() text nodes), never parsed as HTML.
 */
import { h, urlState } from "./live.js";

/**
 * A heartbeat: the runtime's Heartbeat agent event (by kind when the page knows it, else by the
 * payload's variant key, matched as a JSON key so an Output that merely quotes the word is not one:
 * inside a JSON string its quotes are escaped), or a supervision health heartbeat (by subject).
 */
const HEARTBEAT_KEY = /(^|[^\\])"Heartbeat"\s*:\s*\{/;
export function isHeartbeat(event) {
  if (!event) return false;
  if (event.kind) return event.kind === "Heartbeat";
  const subject = String(event.subject || "");
  if (subject.endsWith(".health.heartbeat")) return true;
  return subject.startsWith("agent.") && HEARTBEAT_KEY.test(String(event.excerpt || ""));
}

/** The query flag that hides heartbeats ("?heartbeats=hide"), read from and written to the URL
 * (replaceState: a toggle is no new history entry; the other query parameters stay). */
export const HEARTBEATS_PARAM = "heartbeats";
export function heartbeatsHiddenInUrl() {
  return urlState.get(HEARTBEATS_PARAM) === "hide";
}
export function keepHeartbeatsInUrl(hidden) {
  urlState.write({ [HEARTBEATS_PARAM]: hidden ? "hide" : "" });
}

/** Put ``text`` on the clipboard; where the Clipboard API is not offered (an insecure origin),
 * select ``element``'s text and copy the selection. Resolves true when copied. */
export async function copyText(text, element) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection
    }
  }
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

/**
 * A "Payload" toggle and the box it opens. ``load()`` resolves to the answer of a payload endpoint
 * ({text, json, error?}); it is called once, when the box is first opened (a row costs nothing until
 * a person asks). Copy copies the text as shown.
 */
export function payloadView(load) {
  const note = h("span", { className: "payload-note", role: "status" });
  const pre = h("pre", { className: "payload-json", tabindex: "0" });
  const copy = h("button", { type: "button", className: "button payload-copy", disabled: true }, "Copy");
  const box = h("div", { className: "payload-box", hidden: true }, h("div", { className: "payload-tools" }, copy, note), pre);
  const toggle = h("button", { type: "button", className: "payload-toggle", "aria-expanded": "false" }, "Payload");
  const view = h("div", { className: "payload-view" }, toggle, box);
  let state = "unloaded";

  toggle.addEventListener("click", async () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    box.hidden = !open;
    if (!open || state !== "unloaded") return;
    state = "loading";
    note.textContent = "Loading…";
    try {
      const answer = await load();
      pre.textContent = answer.text;
      pre.dataset.json = answer.json ? "true" : "false";
      note.textContent = answer.json ? "" : `Not JSON (${answer.error || "unreadable"}): shown as text.`;
      copy.disabled = false;
      state = "loaded";
    } catch (error) {
      note.textContent = `The payload could not be loaded: ${error.message}`;
      state = "unloaded"; // opening again tries again
    }
  });
  copy.addEventListener("click", async () => {
    const copied = await copyText(pre.textContent, pre);
    note.textContent = copied ? "Copied." : "Could not copy: select the text and copy it.";
  });
  return view;
}
