"""The dashboard's reads from PostgreSQL: each is one statement whatever the size of the tables.

Counts are one GROUP BY each, with the states nobody is in filled in as zero, so the page always
shows every state in the lifecycle's order. Rates are per-minute counts over the last hour: the
60 minutes come from ``generate_series`` and are joined to the rows of that hour only, which the
time indexes (``supervision_failures_time_idx``, ``supervision_restarts_time_idx``) find without
reading the older millions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import Count, Model

from agents.lifecycle import AgentState
from agents.models import Agent
from mistersmith.live.models import RuntimeProbe
from supervision.models import NodeStatus, SupervisionFailure, SupervisionNode, SupervisionRestart

RATE_MINUTES = 60

# Per-minute counts of rows whose time column falls in the last RATE_MINUTES minutes (the current,
# partial minute is the last bucket). Rows dated in the future (a runtime's clock ahead) are left out.
# The bounds are written inline, not in a CTE: the planner then estimates the range from now()'s
# value (a few thousand rows of millions) and reads it from the time index.
RATE_SQL = """
SELECT m.minute, coalesce(c.n, 0)
FROM generate_series(
    date_trunc('minute', now()) - (%(minutes)s - 1) * interval '1 minute',
    date_trunc('minute', now()),
    interval '1 minute'
) AS m(minute)
LEFT JOIN (
    SELECT date_trunc('minute', t.{column}) AS minute, count(*) AS n
    FROM {table} t
    WHERE t.{column} >= date_trunc('minute', now()) - (%(minutes)s - 1) * interval '1 minute'
      AND t.{column} < date_trunc('minute', now()) + interval '1 minute'
    GROUP BY 1
) c ON c.minute = m.minute
ORDER BY m.minute
"""


def _counts(model: type[Model], column: str, labels: list[str]) -> dict[str, int]:
    """Rows per value of ``column``: every label (zero when absent) in order, then any other value."""
    counts = dict.fromkeys(labels, 0)
    rows = model.objects.order_by().values_list(column).annotate(n=Count("*"))
    for value, n in rows:
        counts[value] = n
    return counts


def agent_state_counts() -> dict[str, int]:
    """Agents per lifecycle state, all nine states included."""
    return _counts(Agent, "status", list(AgentState.values))


def node_status_counts() -> dict[str, int]:
    """Supervision nodes per status (the ``node_status`` enum), all four included."""
    return _counts(SupervisionNode, "status", list(NodeStatus.values))


def per_minute(model: type[Model], column: str, minutes: int = RATE_MINUTES) -> tuple[dt.datetime, list[int]]:
    """The first minute of the window and the count of rows in each of its ``minutes`` minutes."""
    sql = RATE_SQL.format(
        table=connection.ops.quote_name(model._meta.db_table), column=connection.ops.quote_name(column)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"minutes": minutes})
        rows = cursor.fetchall()
    return rows[0][0], [n for _, n in rows]


def failure_and_restart_rates(*, failures: bool, restarts: bool) -> dict[str, Any]:
    """Failures and restarts per minute over the last hour (only the series asked for).

    ``start`` is the first bucket's minute; the last bucket is the current minute, still filling.
    """
    rates: dict[str, Any] = {"minutes": RATE_MINUTES, "start": None}
    for name, wanted, model, column in (
        ("failures", failures, SupervisionFailure, "occurred_at"),
        ("restarts", restarts, SupervisionRestart, "started_at"),
    ):
        if wanted:
            start, counts = per_minute(model, column)
            rates["start"] = start.isoformat()
            rates[name] = {"counts": counts, "total": sum(counts)}
    return rates


POOL_FIELDS = {
    "pool_min": "min",
    "pool_max": "max",
    "pool_size": "size",
    "pool_available": "available",
    "requests_waiting": "waiting",
    "requests_num": "requests",
    "requests_errors": "request_errors",
    "connections_num": "connections_opened",
    "connections_errors": "connection_errors",
}


def console_pool_stats() -> dict[str, Any]:
    """The console's own PostgreSQL pool (psycopg_pool's ``get_stats()`` of the default database).

    Without pooling (``OPTIONS["pool"]`` off) there is nothing to measure: ``{"pooled": False}``.
    """
    pool = getattr(connection, "pool", None)
    if pool is None:
        return {"pooled": False}
    stats = pool.get_stats()
    result: dict[str, Any] = {"pooled": True}
    result.update({name: int(stats.get(key, 0)) for key, name in POOL_FIELDS.items()})
    result["in_use"] = max(0, result["size"] - result["available"])
    return result


HEALTH_FIELDS = ("pool_active", "pool_capacity", "pool_available", "healthy")
# PoolStatus answers the same figures under the runtime's PoolStatus field names (agent/pool.rs).
POOL_STATUS_FIELDS = {
    "pool_active": "active_count",
    "pool_capacity": "max_capacity",
    "pool_available": "available_slots",
}


def runtime_answers() -> dict[str, Any]:
    """The runtime's last answers to the bridge's SystemHealth and PoolStatus requests (one query):
    each request's state ("answered 12 s ago", "no answer for 90 s", "never asked"), and the pool
    figures from SystemHealth, or from PoolStatus where SystemHealth has none."""
    probes = RuntimeProbe.describe_all()
    health, pool = probes["SystemHealth"], probes["PoolStatus"]
    health_data = health["data"] if isinstance(health["data"], dict) else {}
    pool_data = pool["data"] if isinstance(pool["data"], dict) else {}
    figures = {name: health_data.get(name) for name in HEALTH_FIELDS}
    for name, key in POOL_STATUS_FIELDS.items():
        if figures[name] is None:
            figures[name] = pool_data.get(key)
    agents = pool_data.get("agents")
    answered = [at for at in (health["answered_at"], pool["answered_at"]) if at]
    return {
        "health": health,
        "pool_status": pool,
        "figures": figures,
        "pool_agents": len(agents) if isinstance(agents, list) else None,
        "answered_at": max(answered) if answered else None,
    }
