/**
 * The freshness badge of every live page: how far the page's data is behind the stream head.
 *
 * The server answers per bridge feed (GET dashboard:freshness: messages not yet applied, the age
 * of the oldest of them, stale past MISTERSMITH_STALE_SECONDS); this badge shows the worst of the
 * feeds the page is made of (data-feeds, space-separated; empty: all), polled every few seconds
 * while the tab is visible. "up to date" / "3 messages, 2 s behind" / "stale: 120 s behind".
 * Text only (textContent), never HTML.
 */
export const POLL_MS = 5000;

export function describe(feeds) {
  if (!feeds.length) return { state: "unknown", text: "", title: "" };
  // The worst feed decides: stale first, then the most seconds behind, then the most messages.
  const rank = (feed) => [feed.stale ? 1 : 0, feed.seconds_behind, feed.messages_behind];
  const worse = (a, b) => {
    const [x, y] = [rank(a), rank(b)];
    for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] > y[i];
    return false;
  };
  const worst = feeds.reduce((a, b) => (worse(b, a) ? b : a));
  const state = worst.stale ? "stale" : worst.messages_behind ? "behind" : "fresh";
  const title = feeds.map((feed) => `${feed.feed} (${feed.stream}): ${feed.text}`).join("\n");
  return { state, text: worst.text, title };
}

async function poll(badge) {
  const wanted = (badge.dataset.feeds || "").split(/\s+/).filter(Boolean);
  try {
    const response = await fetch(badge.dataset.url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
    const feeds = body.feeds.filter((feed) => !wanted.length || wanted.includes(feed.feed));
    const shown = describe(feeds);
    badge.dataset.state = shown.state;
    badge.textContent = shown.text;
    badge.title = `${shown.title}\nstale after ${body.stale_after_seconds} s`;
  } catch (error) {
    badge.dataset.state = "unknown";
    badge.textContent = "freshness unknown";
    badge.title = error.message;
  }
  badge.hidden = false;
}

function start() {
  const badge = document.getElementById("freshness-badge");
  if (!badge || !badge.dataset.url) return;
  poll(badge);
  setInterval(() => {
    if (!document.hidden) poll(badge);
  }, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll(badge);
  });
}

start();
