/**
 * What the dashboard's uPlot charts share (uPlot itself is window.uPlot, vendor/uplot, loaded as a
 * classic deferred script before the modules): UTC time, the time axis' ticks, axes in the admin's
 * theme colours, and a plot that re-measures itself when the pointer enters it.
 */

/** The admin theme's text and hairline colours (CSS variables of light, dark or the system's theme). */
export function themeColours() {
  const style = getComputedStyle(document.documentElement);
  const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    text: read("--body-fg", "#333"),
    grid: read("--hairline-color", "#e8e8e8"),
    link: read("--link-fg", "#447e9b"),
    error: read("--error-fg", "#ba2121"),
  };
}

/** A Date whose local fields read as UTC (uPlot's tzDate), from epoch seconds. */
export const utc = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");

/** The x axis' tick labels: 24-hour UTC times, with the date under the first tick of each day. */
export function timeTicks(u, splits) {
  const hourMinute = uPlot.fmtDate("{HH}:{mm}");
  const monthDay = uPlot.fmtDate("{MM}-{DD}");
  return splits.map((seconds, i) => {
    const date = utc(seconds);
    const newDay = i === 0 || utc(splits[i - 1]).getDate() !== date.getDate();
    return newDay ? `${hourMinute(date)}\n${monthDay(date)}` : hourMinute(date);
  });
}

/** uPlot's axes (time, counts) in the theme's colours. */
export function themedAxes() {
  const colours = themeColours();
  const axis = { stroke: colours.text, grid: { stroke: colours.grid, width: 1 }, ticks: { stroke: colours.grid, width: 1 } };
  return [{ ...axis, values: timeTicks }, { ...axis, size: 44 }];
}

/**
 * A new uPlot in ``holder``. uPlot re-measures its plot on scroll and resize only; the dashboard's
 * panels grow as they fill, so it measures again when the pointer enters, or the hovered bucket
 * would be read from a stale position.
 */
export function plot(options, data, holder) {
  const chart = new uPlot({ tzDate: utc, ...options }, data, holder);
  chart.over.addEventListener("mouseenter", () => chart.syncRect());
  return chart;
}
