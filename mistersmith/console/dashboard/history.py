"""The dashboard's charts with history: failures and restarts in buckets over a chosen window.

A window (1 h, 6 h, 24 h, 7 d) is cut into a fixed number of buckets of one width (1, 5, 15 or
60 minutes), aligned to that width in UTC so a reload a minute later shows the same buckets. The
last bucket holds now and is still filling. Each series family is one statement: the buckets come
from ``generate_series``, so empty ones are there as zeros, and the rows are read through the time
indexes (``supervision_failures_time_idx``, ``supervision_restarts_time_idx``) between the
window's bounds only. Failures are counted once for both of their families (by node type and by
failure reason) with GROUPING SETS, so the million-row table is read once per request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
SELECT b.bucket, c.node_type, c.reason, c.n
FROM generate_series(%(start)s::timestamptz, %(last)s::timestamptz, %(step)s::interval) AS b(bucket)
LEFT JOIN (
    SELECT date_bin(%(step)s::interval, f.occurred_at, %(start)s::timestamptz) AS bucket,
           n.node_type::text AS node_type, f.failure_reason::text AS reason, count(*) AS n
    FROM supervision_failures f
    JOIN supervision_nodes n ON n.id = f.node_id
    WHERE f.occurred_at >= %(start)s AND f.occurred_at < %(end)s
    GROUP BY GROUPING SETS (
        (date_bin(%(step)s::interval, f.occurred_at, %(start)s::timestamptz), n.node_type),
        (date_bin(%(step)s::interval, f.occurred_at, %(start)s::timestamptz), f.failure_reason)
    )
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


def _zeros(keys: list[str], size: int) -> dict[str, list[int]]:
    return {key: [0] * size for key in keys}


def _run(sql: str, window: Window, start: dt.datetime, end: dt.datetime) -> list[tuple]:
    params = {"start": start, "last": end - window.step, "end": end, "step": window.step}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _bucket_index(rows: list[tuple]) -> dict[dt.datetime, int]:
    index: dict[dt.datetime, int] = {}
    for row in rows:
        index.setdefault(row[0], len(index))
    return index


def failure_series(window: Window, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Failures per bucket by node type and by failure reason (every type and reason, zeros included)."""
    rows = _run(FAILURES_SQL, window, start, end)
    index = _bucket_index(rows)
    by_type = _zeros(list(NodeType.values), window.buckets)
    by_reason = _zeros(list(FailureReason.values), window.buckets)
    for bucket, node_type, reason, n in rows:
        if node_type is not None:
            by_type.setdefault(node_type, [0] * window.buckets)[index[bucket]] = n
        elif reason is not None:
            by_reason.setdefault(reason, [0] * window.buckets)[index[bucket]] = n
    return {"by_node_type": by_type, "by_reason": by_reason, "total": sum(sum(c) for c in by_reason.values())}


def restart_series(window: Window, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Restarts per bucket by outcome now (succeeded, failed, timed out, pending), by start time."""
    rows = _run(RESTARTS_SQL.format(outcome=RESTART_OUTCOME_SQL), window, start, end)
    index = _bucket_index(rows)
    outcomes = _zeros(list(RESTART_OUTCOMES), window.buckets)
    for bucket, outcome, n in rows:
        if outcome is not None:
            outcomes[outcome][index[bucket]] = n
    return {"by_outcome": outcomes, "total": sum(sum(c) for c in outcomes.values())}


def chart_history(window: Window, *, failures: bool, restarts: bool, now: dt.datetime | None = None) -> dict[str, Any]:
    """The charts' data for one window: the buckets' start times (epoch seconds, what uPlot takes
    as its x values) and only the series families asked for."""
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
        data["failures"] = failure_series(window, start, end)
    if restarts:
        data["restarts"] = restart_series(window, start, end)
    return data
