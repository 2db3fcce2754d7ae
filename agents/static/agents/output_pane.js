/**
 * The agent page's live output: each Output chunk with its time, a search box that shows only the
 * chunks holding its text, and a download of the chunks shown as a text file (a Blob made in the
 * page: the text the page holds, "time  text" per chunk; a chunk the page holds only the start of
 * says so in its text, and "show all" in the history loads the rest).
 *
 * Everything is text nodes (h()); nothing is parsed as HTML.
 */
import { h, urlState } from "../mistersmith/live.js";

/** "13:45:07" in the browser's zone for an ISO time (the whole date and time in its title). */
export function clockText(iso) {
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? String(iso) : time.toLocaleTimeString([], { hour12: false });
}

export class OutputPane {
  /**
   * ``element`` holds the chunks; ``filter`` is the search input, ``count`` says how many match,
   * ``download`` is the button; at most ``limit`` chunks are kept (the oldest go first).
   */
  constructor(element, { limit, filter, count, download, fileName }) {
    this.element = element;
    this.limit = limit;
    this.filter = filter;
    this.count = count;
    this.fileName = fileName;
    this.needle = "";
    filter.value = urlState.get("output");
    filter.addEventListener("input", () => {
      this.keepFilterInUrl();
      this.refilter();
    });
    urlState.onPop((params) => {
      filter.value = params.get("output") ?? "";
      this.refilter();
    });
    download.addEventListener("click", () => this.download());
    this.refilter();
  }

  clear() {
    this.element.replaceChildren();
    this.refreshCount();
  }

  matches(chunk) {
    return !this.needle || chunk.dataset.search.includes(this.needle);
  }

  /** Append a batch of chunks ({text, time, received}) at once: one layout for the whole batch
   * (reading the scroll position per chunk would lay the pane out again per chunk, which a burst
   * of thousands turns into seconds of a frozen page). */
  append(chunks) {
    if (!chunks.length) return;
    const pane = this.element;
    const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    const rows = chunks.slice(-this.limit).map((chunk) => {
      const text = chunk.text.endsWith("\n") ? chunk.text.slice(0, -1) : chunk.text;
      const title = chunk.received ? `received ${chunk.time}` : chunk.time;
      const row = h(
        "div",
        { className: "output-chunk", "data-time": chunk.time },
        h("time", { className: "output-time", datetime: chunk.time, title }, clockText(chunk.time)),
        h("span", { className: "output-text" }, text),
      );
      row.dataset.search = text.toLowerCase();
      row.hidden = !this.matches(row);
      return row;
    });
    pane.append(...rows);
    const extra = pane.childElementCount - this.limit;
    for (let i = 0; i < extra; i += 1) pane.firstElementChild.remove();
    if (atBottom) pane.scrollTop = pane.scrollHeight;
    this.refreshCount();
  }

  refilter() {
    this.needle = this.filter.value.trim().toLowerCase();
    for (const row of this.element.children) row.hidden = !this.matches(row);
    this.refreshCount();
  }

  shown() {
    return [...this.element.children].filter((row) => !row.hidden);
  }

  refreshCount() {
    const total = this.element.childElementCount;
    const shown = this.needle ? this.shown().length : total;
    this.count.textContent = this.needle
      ? `${shown} of ${total} chunk${total === 1 ? "" : "s"} match.`
      : `${total} chunk${total === 1 ? "" : "s"}.`;
  }

  keepFilterInUrl() {
    urlState.write({ output: this.filter.value }, "typing", "output");
  }

  /** The chunks shown, "ISO time  text" each, as a file the browser saves. */
  download() {
    const lines = this.shown().map((row) => `${row.dataset.time}  ${row.querySelector(".output-text").textContent}\n`);
    const blob = new Blob(lines, { type: "text/plain;charset=utf-8" });
    const link = h("a", { href: URL.createObjectURL(blob), download: this.fileName, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  }
}
