"""Freshness of the live pages: how far each bridge feed is behind its stream, for the badge every
live page shows next to its connection badge, for /metrics and for verify_state.

Read from NATS (mistersmith/jetstream/freshness.py), so any worker answers the same, whichever
process runs the bridge; cached about a second per process, so many viewers polling cost NATS
one round a second.
"""

from __future__ import annotations

from typing import Any

from mistersmith.jetstream.client import connection
from mistersmith.jetstream.freshness import CACHE, FeedLag, FeedRef, feeds_lag, stale_seconds, summary
from mistersmith.live import catchup as bridge_catchup
from mistersmith.live.bridge import FEEDS
from mistersmith.live.positions import bridge_consumer_prefix


def bridge_feeds(prefix: str | None = None) -> list[FeedRef]:
    """The bridge's feeds with their durable consumers for ``prefix`` (MISTERSMITH_BRIDGE_PREFIX)."""
    prefix = prefix or bridge_consumer_prefix()
    return [FeedRef(feed.suffix, feed.stream, feed.consumer_name(prefix)) for feed in FEEDS]


def read_lags(prefix: str | None = None) -> list[FeedLag]:
    """Every feed's lag now (no cache); raises NatsUnavailable when NATS is away."""
    nats = connection()
    js = nats.client().jetstream()
    return nats.run(feeds_lag(js, bridge_feeds(prefix), stale_after=stale_seconds()))


def page_freshness() -> dict[str, Any]:
    """The badge's figures: per feed and overall, with the stale threshold (cached ~1 s)."""
    prefix = bridge_consumer_prefix()
    threshold = stale_seconds()

    def read() -> dict[str, Any]:
        lags = read_lags(prefix)
        figures = {"feeds": [lag.as_dict() for lag in lags], **summary(lags), "stale_after_seconds": threshold}
        return with_catch_up(figures, prefix)

    return CACHE.get((prefix, threshold), read)


def with_catch_up(figures: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The badge's figures with each feed still catching up on its stream's history (a bridge's
    first start) saying so: "catching up: N of M" says more than "1,000,000 messages behind"."""
    running = bridge_catchup.unfinished(prefix)
    for feed in figures["feeds"]:
        row = running.get(feed["feed"])
        if row is not None:
            feed["catch_up"] = {"done": row.done, "total": row.total}
            feed["text"] = bridge_catchup.progress_text(row)
    if running:
        figures["text"] = "; ".join(
            f"{name}: {bridge_catchup.progress_text(row)}" for name, row in sorted(running.items())
        )
    return figures
