"""Failures changelist with 1,000,000 rows: first page and a filtered page.

Target (issue 2): under 300 ms and at most 10 queries, median, on this machine.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.support import admin_client, bench_database, measure

FAILURES = 1_000_000
TARGET = {"median_ms": 300, "queries": 10}
PAGES = {
    "first_page": {},
    "filtered_reason": {"failure_reason__exact": "HeartbeatTimeout"},
    "filtered_reason_and_flag": {"failure_reason__exact": "Crash", "restart_attempted__exact": "1"},
    "search_node": {"q": "bench-worker-000042"},
}


def ensure_failures(count: int) -> None:
    from mistersmith.simulator import demo
    from supervision.models import SupervisionNode

    if not SupervisionNode.objects.filter(node_id="bench-root").exists():
        demo.seed(prefix="bench", nodes=10_000, failures=count, hive=False)


def run() -> Iterator[dict]:
    with bench_database():
        ensure_failures(FAILURES)
        client = admin_client()
        for name, params in PAGES.items():

            def get(params=params):
                response = client.get("/admin/supervision/supervisionfailure/", params)
                assert response.status_code == 200, response.status_code
                return response

            figures = measure(get)
            yield {"figure": f"failures_changelist_{name}", "rows": FAILURES, **figures, "target": TARGET}
