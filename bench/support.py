"""What the benchmarks share: a database of their own, timing and query counting."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext


@contextmanager
def bench_database() -> Iterator[str]:
    """Point the default connection at ``<name>_bench`` (created and migrated when missing)."""
    settings_dict = connection.settings_dict
    settings_dict.setdefault("TEST", {})["NAME"] = f"{settings_dict['NAME']}_bench"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)
    try:
        yield name
    finally:
        connection.close()


def measure(action: Callable[[], object], repeat: int = 9, warmup: int = 2) -> dict:
    """Median and p90 wall time in ms, and the query count of one run."""
    for _ in range(warmup):
        action()
    with CaptureQueriesContext(connection) as queries:
        action()
    query_count = len(queries.captured_queries)  # read now: the next request clears the log
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(len(times) * 0.9) - 1], 1),
        "queries": query_count,
    }
