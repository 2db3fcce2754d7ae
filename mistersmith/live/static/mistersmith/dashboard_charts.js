/**
 * The dashboard's charts with history, drawn by uPlot (vendor/uplot, loaded before this module as
 * a classic deferred script: window.uPlot).
 *
 * - The window (1h, 6h, 24h, 7d) lives in the URL (?window=6h): the buttons are plain links that
 *   this module turns into pushState + a re-read, and the back button re-reads the window it
 *   returns to. A reload keeps it. An unknown window is the server's 400, shown as its text.
 * - GET dashboard:charts?window=… gives the buckets' start times (epoch seconds, UTC) and a count
 *   per bucket for each series; families the user may not see are absent (and their figure too).
 * - Hovering shows every series' value at that bucket in the legend under the chart (uPlot's
 *   cursor and live legend); the time axis is labelled in UTC, 24-hour, with the date at each new day.
 * - Colours follow the admin's theme (light, dark, or the system's via prefers-color-scheme): the
 *   axes read the admin's CSS variables and the charts are drawn again when the theme changes.
 * - The data is re-read every minute; the last bucket holds now and is still filling.
 */
import { getJson, readJson } from "./live.js";
import { plot, themedAxes, utc } from "./uplot_look.js";

const config = readJson("dashboard-config");
const panel = document.getElementById("panel-history");
const REFRESH_MS = 60000;
const HEIGHT = 180;
const numbers = new Intl.NumberFormat("en-US");

// Mid-tone colours, legible on the admin's light and dark backgrounds alike.
const PALETTE = ["#3b82f6", "#f59e0b", "#a855f7", "#14b8a6", "#ef4444"];
const OUTCOME_COLOURS = { succeeded: "#22a06b", failed: "#e5484d", timed_out: "#f59e0b", pending: "#8b8d98" };

// figure id -> how to read its series from the answer.
const FIGURES = {
  "history-failures-type": (data) => data.failures && data.failures.by_node_type,
  "history-failures-reason": (data) => data.failures && data.failures.by_reason,
  "history-restarts": (data) => data.restarts && data.restarts.by_outcome,
};

const state = { window: null, data: null, charts: {}, loads: 0, error: null };
window.misterSmithCharts = state;

const windowLinks = () => [...panel.querySelectorAll("[data-window]")];
const defaultWindow = () => (panel.querySelector("[data-default]") || windowLinks()[0]).dataset.window;
const urlWindow = () => new URLSearchParams(window.location.search).get("window") || defaultWindow();

const label = (key) => key.replace(/_/g, " ");

function timeValue(data) {
  const withDate = data.step_seconds >= 3600 || data.window !== "1h";
  const format = uPlot.fmtDate(withDate ? "{YYYY}-{MM}-{DD} {HH}:{mm} UTC" : "{HH}:{mm} UTC");
  return (u, seconds) => (seconds == null ? "–" : format(utc(seconds)));
}

function options(figureId, keys, data, width) {
  const colour = (key, i) => (figureId === "history-restarts" && OUTCOME_COLOURS[key]) || PALETTE[i % PALETTE.length];
  return {
    width,
    height: HEIGHT,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    cursor: { points: { size: 6 } },
    legend: { live: true },
    series: [
      { label: "Time", value: timeValue(data) },
      ...keys.map((key, i) => ({
        label: label(key),
        stroke: colour(key, i),
        width: 1.5,
        points: { show: false },
        value: (u, v) => (v == null ? "–" : numbers.format(v)),
      })),
    ],
    axes: themedAxes(),
  };
}

function draw(figure, series, data) {
  const holder = figure.querySelector("[data-chart]");
  const keys = Object.keys(series);
  const total = keys.reduce((sum, key) => sum + series[key].reduce((a, b) => a + b, 0), 0);
  figure.querySelector("[data-total]").textContent = `${numbers.format(total)} in ${data.label}`;
  holder.setAttribute("role", "img");
  holder.setAttribute("aria-label", `${figure.querySelector("figcaption").firstChild.textContent.trim()} over ${data.label}: ${total} in total`);
  const previous = state.charts[figure.id];
  if (previous) previous.destroy();
  const width = Math.max(240, holder.clientWidth || figure.clientWidth || 600);
  state.charts[figure.id] = plot(options(figure.id, keys, data, width), [data.buckets, ...keys.map((k) => series[k])], holder);
}

function render() {
  const data = state.data;
  if (!data) return;
  for (const [id, pick] of Object.entries(FIGURES)) {
    const figure = document.getElementById(id);
    const series = pick(data);
    if (figure && series) draw(figure, series, data);
  }
  panel.dataset.window = data.window;
}

function markWindow(name) {
  for (const link of windowLinks()) {
    if (link.dataset.window === name) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
}

function showError(message) {
  const note = panel.querySelector("[data-error]");
  state.error = message || null;
  note.textContent = message || "";
  note.hidden = !message;
}

async function load() {
  const name = urlWindow();
  state.window = name;
  markWindow(name);
  panel.dataset.ready = "false";
  try {
    const data = await getJson(`${config.chartsUrl}?window=${encodeURIComponent(name)}`);
    if (state.window !== name) return; // another window was chosen while this one loaded
    state.data = data;
    showError(null);
    render();
  } catch (error) {
    showError(`The charts cannot be read: ${error.message}`);
  }
  state.loads += 1;
  panel.dataset.ready = "true";
}

function choose(event) {
  const link = event.target.closest("[data-window]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  const url = new URL(window.location.href);
  url.searchParams.set("window", link.dataset.window);
  if (url.href !== window.location.href) window.history.pushState(null, "", url);
  load();
}

function watchTheme() {
  new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", render);
  new ResizeObserver(() => {
    for (const chart of Object.values(state.charts)) {
      const width = chart.root.parentElement.clientWidth;
      if (width && Math.abs(width - chart.width) > 2) chart.setSize({ width, height: HEIGHT });
    }
  }).observe(panel);
}

if (panel && window.uPlot) {
  panel.querySelector(".history-windows").addEventListener("click", choose);
  window.addEventListener("popstate", load);
  watchTheme();
  load();
  setInterval(load, REFRESH_MS);
}
