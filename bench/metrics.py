"""A /metrics scrape on the changelist benchmark's data set (1,000,000 failures).

Two figures: a scrape of the installation as it is, and one during a "storm" (20,000 failures and
restarts in the last minutes, more than the recent counts' cap; written in a transaction that is
rolled back, so the shared bench database is left as it was). Target (issue 5): under 200 ms.

``--failures N`` runs at another scale in a database of its own (``<name>_bench_metrics_<N>``),
so a small trial run never leaves a small data set where the 1M benchmarks expect theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

from django.db import connection, transaction

from bench.changelist import FAILURES, ensure_failures
from bench.support import bench_database, measure

TARGET = {"median_ms": 200}
STORM = 20_000

STORM_SQL = """
WITH nodes AS (SELECT id FROM supervision_nodes ORDER BY id LIMIT 100),
failures AS (
    INSERT INTO supervision_failures (id, node_id, failure_reason, failure_detail, occurred_at)
    SELECT gen_random_uuid(), n.id, 'Crash', 'bench storm', now() - random() * interval '4 minutes'
    FROM generate_series(1, %(rows)s) g, LATERAL (SELECT id FROM nodes OFFSET g %% 100 LIMIT 1) n
    RETURNING id, node_id
)
INSERT INTO supervision_restarts (id, node_id, failure_id, restart_attempt_number, restart_delay_ms, started_at)
SELECT gen_random_uuid(), node_id, id, 1, 100, now() - random() * interval '4 minutes' FROM failures
"""


def scaled_database(failures: int) -> AbstractContextManager[str]:
    """The bench database at the default scale, else one of its own per scale."""
    return bench_database() if failures == FAILURES else bench_database(f"bench_metrics_{failures}")


def run(failures: int = FAILURES) -> Iterator[dict]:
    from django.test import Client

    with scaled_database(failures):
        ensure_failures(failures)
        client = Client(HTTP_HOST="localhost")  # from 127.0.0.1: inside the default allowed networks

        def scrape() -> object:
            response = client.get("/metrics")
            assert response.status_code == 200, response.status_code
            assert b"db_pool_size" in response.content and b'mistersmith_up{component="nats"} 1.0' in response.content
            return response

        yield {"figure": "metrics_scrape", "failures": failures, **measure(scrape), "target": TARGET}
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(STORM_SQL, {"rows": STORM})
            figures = measure(scrape)
            transaction.set_rollback(True)
        yield {
            "figure": "metrics_scrape_storm",
            "failures": failures,
            "recent_rows": STORM,
            **figures,
            "target": TARGET,
        }
