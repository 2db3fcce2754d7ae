"""The dashboard's charts with history: failures and restarts in buckets over a chosen window.

A window (1 h, 6 h, 24 h, 7 d) is cut into a fixed number of buckets of one width (1, 5, 15 or
60 minutes), aligned to that width in UTC so a reload a minute later shows the same buckets. The
last bucket holds now and is still filling. Each series family is one statement: the buckets come
from ``generate_series``, so empty ones are there as zeros, and the rows are read through the time
indexes (``supervision_failures_time_idx``, ``supervision_restarts_time_idx``) between the
window's bounds only. Failures are counted once per (bucket, node type, reason), a few thousand
groups hashed in memory, and both of their families (by node type, by reason) are summed from that.

A 7-day window holds all of a million failures, and counting them takes seconds, so a bucket's
counts are kept (in the "charts" cache, per process) once the bucket is *settled*: ended long
enough ago that no row of it is still expected (failures: 5 minutes, the runtime writes them as
they happen; restarts: 1 hour, well past any delay plus escalation timeout, after which an
unanswered restart stays pending). A request reads from the database only from its first bucket
not kept to the window's end: the newest bucket or two once the cache is warm. What a settled
bucket misses (a row written late with an old time) shows when its kept counts expire.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from supervision.models import FailureReason, NodeType
from supervision.services import RESTART_OUTCOME_SQL, RESTART_OUTCOMES


@dataclass(frozen=True)
class Window:
    """A chart window: its name in the URL, its label, its length and its bucket width."""

    name: str
    label: str
    length: dt.timedelta
    step: dt.timedelta

    @property
    def buckets(self) -> int:
        return int(self.length / self.step)


WINDOWS = {
    w.name: w
    for w in (
        Window("1h", "1 hour", dt.timedelta(hours=1), dt.timedelta(minutes=1)),
        Window("6h", "6 hours", dt.timedelta(hours=6), dt.timedelta(minutes=5)),
        Window("24h", "24 hours", dt.timedelta(hours=24), dt.timedelta(minutes=15)),
        Window("7d", "7 days", dt.timedelta(days=7), dt.timedelta(hours=1)),
    )
}
DEFAULT_WINDOW = "24h"

# The bounds are parameters, not a CTE's values: the planner then estimates the range from them and
# reads it from the time index. Rows dated after the window (a runtime's clock ahead) are left out.
FAILURES_SQL = """
SELECT b.bucket, c.node_type::text, c.reason::text, c.n
FROM generate_series(%(start)s::timestamptz, %(last)s::timestamptz, %(step)s::interval) AS b(bucket)
LEFT JOIN (
    SELECT date_bin(%(step)s::interval, f.occurred_at, %(start)s::timestamptz) AS bucket,
           n.node_type, f.failure_reason AS reason, count(*) AS n
    FROM supervision_failures f
    JOIN supervision_nodes n ON n.id = f.node_id
    WHERE f.occurred_at >= %(start)s AND f.occurred_at < %(end)s
    GROUP BY 1, 2, 3
) c ON c.bucket = b.bucket
ORDER BY b.bucket
"""

RESTARTS_SQL = """
SELECT b.bucket, c.outcome, c.n
FROM generate_series(%(start)s::timestamptz, %(last)s::timestamptz, %(step)s::interval) AS b(bucket)
LEFT JOIN (
    SELECT date_bin(%(step)s::interval, started_at, %(start)s::timestamptz) AS bucket,
           {outcome} AS outcome, count(*) AS n
    FROM supervision_restarts
    WHERE started_at >= %(start)s AND started_at < %(end)s
    GROUP BY 1, 2
) c ON c.bucket = b.bucket
ORDER BY b.bucket
"""


def parse_window(value: str | None) -> Window:
    """The window named in ``?window=`` (none: the default). Raises ValueError for any other name."""
    if not value:
        return WINDOWS[DEFAULT_WINDOW]
    if value not in WINDOWS:
        raise ValueError(f"Unknown window {value!r}; choose one of {', '.join(WINDOWS)}.")
    return WINDOWS[value]


def bounds(window: Window, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The window's first bucket start and its end (exclusive): the end is the next multiple of the
    bucket width after ``now`` (UTC epoch), so the last bucket holds now."""
    now = now or timezone.now()
    step = int(window.step.total_seconds())
    end = dt.datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, tz=dt.UTC)
    return end - window.length, end


CACHE = "charts"
# {group: {key: count}} of one bucket; groups: "by_node_type", "by_reason" or "by_outcome".
BucketCounts = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Family:
    """One statement's series: how long until its buckets settle, how long they are kept, and how
    its rows (bucket first) become a bucket's counts."""

    name: str
    sql: str
    settle: dt.timedelta
    keep_seconds: int
    add_row: Callable[[BucketCounts, tuple], None]


def _add_failure(counts: BucketCounts, row: tuple) -> None:
    _, node_type, reason, n = row
    if node_type is not None:
        by_type, by_reason = counts.setdefault("by_node_type", {}), counts.setdefault("by_reason", {})
        by_type[node_type] = by_type.get(node_type, 0) + n
        by_reason[reason] = by_reason.get(reason, 0) + n


def _add_restart(counts: BucketCounts, row: tuple) -> None:
    _, outcome, n = row
    if outcome is not None:
        counts.setdefault("by_outcome", {})[outcome] = n


FAILURES = Family("failures", FAILURES_SQL, dt.timedelta(minutes=5), 24 * 3600, _add_failure)
RESTARTS = Family(
    "restarts", RESTARTS_SQL.format(outcome=RESTART_OUTCOME_SQL), dt.timedelta(hours=1), 3600, _add_restart
)


def _read(family: Family, step: dt.timedelta, start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, BucketCounts]:
    """Counts per bucket of [start, end) from the database, every bucket present (empty: {})."""
    params = {"start": start, "last": end - step, "end": end, "step": step}
    with connection.cursor() as cursor:
        cursor.execute(family.sql, params)
        rows = cursor.fetchall()
    buckets: dict[dt.datetime, BucketCounts] = {}
    for row in rows:
        family.add_row(buckets.setdefault(row[0], {}), row)
    return buckets


def bucket_counts(family: Family, window: Window, start: dt.datetime, now: dt.datetime) -> list[BucketCounts]:
    """Each bucket's counts: settled buckets from the cache where kept, the rest in one statement
    from the first bucket not kept to the window's end (whose settled buckets are then kept)."""
    step = int(window.step.total_seconds())
    starts = [start + i * window.step for i in range(window.buckets)]
    settled_before = now - family.settle - window.step
    settled = {b: f"{family.name}:{step}:{int(b.timestamp())}" for b in starts if b <= settled_before}
    kept = caches[CACHE].get_many(list(settled.values()))
    counts = {b: kept[key] for b, key in settled.items() if key in kept}
    first_missing = next((b for b in starts if b not in counts), None)
    if first_missing is not None:
        fresh = _read(family, window.step, first_missing, starts[-1] + window.step)
        for b in starts[starts.index(first_missing) :]:
            counts[b] = fresh.get(b, {})
        new = {key: counts[b] for b, key in settled.items() if key not in kept}
        caches[CACHE].set_many(new, family.keep_seconds)
    return [counts[b] for b in starts]


def _series(buckets: list[BucketCounts], group: str, keys: list[str]) -> dict[str, list[int]]:
    """One group's series: a count per bucket for every key (known keys first, zeros included)."""
    series = {key: [0] * len(buckets) for key in keys}
    for i, counts in enumerate(buckets):
        for key, n in counts.get(group, {}).items():
            series.setdefault(key, [0] * len(buckets))[i] = n
    return series


def _total(series: dict[str, list[int]]) -> int:
    return sum(sum(counts) for counts in series.values())


def failure_series(window: Window, start: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    """Failures per bucket by node type and by failure reason (every type and reason, zeros included)."""
    buckets = bucket_counts(FAILURES, window, start, now)
    by_reason = _series(buckets, "by_reason", list(FailureReason.values))
    return {
        "by_node_type": _series(buckets, "by_node_type", list(NodeType.values)),
        "by_reason": by_reason,
        "total": _total(by_reason),
    }


def restart_series(window: Window, start: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    """Restarts per bucket by outcome now (succeeded, failed, timed out, pending), by start time."""
    by_outcome = _series(bucket_counts(RESTARTS, window, start, now), "by_outcome", list(RESTART_OUTCOMES))
    return {"by_outcome": by_outcome, "total": _total(by_outcome)}


def chart_history(window: Window, *, failures: bool, restarts: bool, now: dt.datetime | None = None) -> dict[str, Any]:
    """The charts' data for one window: the buckets' start times (epoch seconds, what uPlot takes
    as its x values) and only the series families asked for."""
    now = now or timezone.now()
    start, end = bounds(window, now)
    step = int(window.step.total_seconds())
    data: dict[str, Any] = {
        "window": window.name,
        "label": window.label,
        "step_seconds": step,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "buckets": [int(start.timestamp()) + i * step for i in range(window.buckets)],
    }
    if failures:
        data["failures"] = failure_series(window, start, now)
    if restarts:
        data["restarts"] = restart_series(window, start, now)
    return data
