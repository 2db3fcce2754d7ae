"""Dashboard snapshot with 1,000,000 failures (the changelist benchmark's data set).

The rates are per-minute counts over the last hour; they must stay index-only whatever the table
size. No target was set by the issue; the admin's page target (300 ms) is the yardstick.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.changelist import FAILURES, ensure_failures
from bench.support import admin_client, bench_database, measure

TARGET = {"median_ms": 300}
SNAPSHOTS = {
    "rates": {"parts": "rates"},
    "attention": {"parts": "attention"},  # one statement of bounded counts, plus the feeds' freshness (NATS)
    "database_parts": {"parts": "attention,agents,nodes,rates"},
    "everything": {},
}


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
