"""manage.py prune over N old supervision failures (default 1,000,000).

The failures are written by one INSERT ... SELECT; a tenth of them have a restart, half of those
recent (their failure is kept back) and half as old (they go first, the failure with them). The
figures: the dry run's and the prune's wall time, rows per second, and the longest batch (the
longest any lock is held), plus whether the batch query walks the time index.
``python -m bench prune --failures 20000`` for a quick run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from bench.support import bench_database

FAILURES = 1_000_000


def _seed(failures: int) -> str:
    from django.db import connection

    from supervision.models import SupervisionNode

    node, _ = SupervisionNode.objects.get_or_create(
        node_id="bench-prune", defaults={"node_type": "Service", "node_type_detail": "bench"}
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, occurred_at)
            SELECT %s, 'Crash', 'bench prune ' || n, now() - interval '400 days' + n * interval '1 second'
              FROM generate_series(1, %s) AS n
            """,
            [node.pk, failures],
        )
        cursor.execute(
            """
            INSERT INTO supervision_restarts (node_id, failure_id, restart_attempt_number, restart_delay_ms, started_at)
            SELECT f.node_id, f.id, 1, 100,
                   CASE WHEN row_number() OVER (ORDER BY f.id) %% 2 = 0 THEN now() ELSE f.occurred_at END
              FROM supervision_failures f
             WHERE f.node_id = %s AND random() < 0.1
            """,
            [node.pk],
        )
    return str(node.pk)


def _plan() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            EXPLAIN SELECT t.id, t.occurred_at FROM supervision_failures t
             WHERE t.occurred_at < now() - interval '90 days'
               AND (t.occurred_at, t.id) > (now() - interval '300 days', '00000000-0000-0000-0000-000000000000'::uuid)
             ORDER BY t.occurred_at, t.id LIMIT 5000
            """
        )
        return "\n".join(row[0] for row in cursor.fetchall())


def run(failures: int = FAILURES) -> Iterator[dict]:
    from django.db import connection

    from mistersmith.operations.retention import prune

    with bench_database():
        seeded = time.perf_counter()
        _seed(failures)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE supervision_failures; ANALYZE supervision_restarts")
        seed_seconds = time.perf_counter() - seeded
        plan = _plan()
        started = time.perf_counter()
        counted = {r.kind: r for r in prune(only=["restarts", "failures"], dry_run=True)}
        dry_seconds = time.perf_counter() - started

        batch_times: list[float] = []
        last = [time.perf_counter()]

        def progress(_result: object) -> None:
            now = time.perf_counter()
            batch_times.append(now - last[0])
            last[0] = now

        started = time.perf_counter()
        results = {r.kind: r for r in prune(only=["restarts", "failures"], progress=progress)}
        seconds = time.perf_counter() - started
        deleted = results["failures"].deleted + results["restarts"].deleted
        yield {
            "figure": "prune_failures",
            "failures": failures,
            "seed_s": round(seed_seconds, 1),
            "dry_run_s": round(dry_seconds, 2),
            "would_delete": counted["failures"].deleted,
            "prune_s": round(seconds, 2),
            "deleted_failures": results["failures"].deleted,
            "deleted_restarts": results["restarts"].deleted,
            "kept_back": results["failures"].kept_back,
            "rows_per_s": round(deleted / seconds) if seconds else None,
            "batches": results["failures"].batches + results["restarts"].batches,
            "longest_batch_ms": round(max(batch_times, default=0) * 1000, 1),
            "batch_query_uses_index": "Index" in plan and "Seq Scan" not in plan,
        }
        with connection.cursor() as cursor:  # what was kept back goes with its node (the database cascades)
            cursor.execute("DELETE FROM supervision_nodes WHERE node_id = 'bench-prune'")
