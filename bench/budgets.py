"""Restart budgets for every node in one query, on the 100,000-node tree with 1,000,000 failures
(the tree bench's ``tree100k``, seeded once and kept).

Figures: the all-nodes summary (supervision/budgets.py ``budget_summary``: what /metrics and the
dashboard read), every node's budget row fetched, and the same two with one policy's window
stretched to 30 days inside a rolled-back transaction: the worst case, where the failures read
back to the longest window are all 1,000,000 of them.

Target (issue 15): budgets for all nodes in one query; this bench holds it to under 500 ms median
with today's windows (a scrape's statement timeout is 1.5 s).
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.support import bench_database, measure
from bench.tree import ensure_tree

PREFIX, NODES = "tree100k", 100_000
TARGET = {"median_ms": 500, "queries": 1}
WORST_WINDOW_SECONDS = 30 * 86_400


def _all_rows() -> int:
    from django.db import connection

    from supervision import budgets

    with connection.cursor() as cursor:
        cursor.execute(budgets.ALL_NODES_SQL)
        return len(cursor.fetchall())


def _figures(label: str) -> Iterator[dict]:
    from django.db import connection

    from supervision import budgets

    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM supervision_nodes), (SELECT count(*) FROM supervision_failures)")
        nodes, failures = cursor.fetchone()
    common = {"nodes": nodes, "failures": failures, "windows": label}
    summary = budgets.budget_summary()
    yield {
        "figure": "budgets_all_nodes_summary",
        **common,
        **measure(budgets.budget_summary),
        "summary": summary,
        "target": TARGET,
    }
    yield {"figure": "budgets_all_nodes_rows", **common, "rows": _all_rows(), **measure(_all_rows), "target": TARGET}


def run() -> Iterator[dict]:
    from django.db import connection, transaction

    with bench_database():
        ensure_tree(PREFIX, NODES)
        yield from _figures("as seeded")
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE supervision_policies SET time_window_seconds = %s WHERE id = "
                    "(SELECT id FROM supervision_policies ORDER BY id LIMIT 1)",
                    [WORST_WINDOW_SECONDS],
                )
            yield from _figures("one policy of 30 days: every failure read")
            transaction.set_rollback(True)
