"""Dashboard snapshot with 1,000,000 failures (the changelist benchmark's data set).

The rates are per-minute counts over the last hour; they must stay index-only whatever the table
size. No target was set by the issue; the admin's page target (300 ms) is the yardstick.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.core.cache import caches

from bench.changelist import FAILURES, ensure_failures
from bench.support import admin_client, bench_database, measure

TARGET = {"median_ms": 300}
SNAPSHOTS = {
    "rates": {"parts": "rates"},
    "attention": {"parts": "attention"},  # one statement of bounded counts, plus the feeds' freshness (NATS)
    "database_parts": {"parts": "attention,agents,nodes,rates"},
    "everything": {},
}
# The charts with history (dashboard:charts): 7d holds every one of the million failures. Warm:
# settled buckets kept (every request after a worker's first); cold: the cache emptied each time.
CHART_WINDOWS = ("1h", "24h", "7d")


def run() -> Iterator[dict]:
    with bench_database():
        ensure_failures(FAILURES)
        client = admin_client()
        for name, params in SNAPSHOTS.items():

            def get(params=params):
                response = client.get("/admin/live/snapshot/", params)
                assert response.status_code == 200, response.content[:200]
                return response

            yield {"figure": f"dashboard_snapshot_{name}", "failures": FAILURES, **measure(get), "target": TARGET}
        for window in CHART_WINDOWS:
            for cold in (True, False):

                def get_charts(window=window, cold=cold):
                    if cold:  # nothing kept: every bucket read from the tables (a worker's first request)
                        caches["charts"].clear()
                    response = client.get("/admin/live/charts/", {"window": window})
                    assert response.status_code == 200, response.content[:200]
                    return response

                figures = measure(get_charts, repeat=5 if cold else 9)
                name = f"charts_{window}_cold" if cold else f"charts_{window}"
                yield {"figure": name, "failures": FAILURES, **figures, "target": None if cold else TARGET}
