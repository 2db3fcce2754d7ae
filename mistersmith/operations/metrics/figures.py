"""The console's own Prometheus metrics, read when ``/metrics`` is scraped.

Why at scrape time: the console runs as one process, or as several ASGI workers beside a bridge
process. A value read from PostgreSQL or NATS when Prometheus asks is the same whichever process
answers, and costs nothing between scrapes. Only three things are the answering process's own:
its database pool, the live sockets it holds, and the counters of a bridge running inside it.

A scrape stays fast on a large installation: no exact ``COUNT(*)`` of a big table (exact counts
stop at :data:`EXACT_COUNT_LIMIT` rows, beyond that PostgreSQL's own estimate is used) and the
"recent" counts read the time indexes of the last window only, capped at :data:`RECENT_CAP`.
Each part has its own budget and failure handling: PostgreSQL or NATS away turns that part's
``mistersmith_up`` to 0 and leaves the rest of the scrape intact. See docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# The live floor's own gauges (updated as sockets come and go), in the default registry from import.
from mistersmith.live.metrics import LIVE_CONSUMERS, LIVE_SOCKETS  # noqa: F401

logger = logging.getLogger(__name__)

EXACT_COUNT_LIMIT = 10_000  # rows counted exactly per table; beyond, PostgreSQL's estimate
RECENT_CAP = 10_000  # rows a "recent" count reads at most (per failure reason; restarts in all)
DATABASE_TIMEOUT_MS = 1500  # statement_timeout of the scrape's queries
LABEL_VALUES_CAP = 200  # distinct bridge event kinds / reasons exported; the rest become "other"

# The pool statistics of psycopg_pool's get_stats(): gauges are its measures, counters its
# running totals since the pool was made (milliseconds become seconds).
POOL_GAUGES = {
    "pool_min": ("db_pool_min", "Minimum connections the pool keeps."),
    "pool_max": ("db_pool_max", "Maximum connections the pool may open."),
    "pool_size": ("db_pool_size", "Connections the pool holds now (in use, idle, or being made)."),
    "pool_available": ("db_pool_available", "Idle connections ready to be handed out."),
    "requests_waiting": ("db_pool_requests_waiting", "Requests waiting for a connection right now."),
}
POOL_COUNTERS = {
    "requests_num": ("db_pool_requests", "Connection requests.", 1),
    "requests_queued": ("db_pool_requests_queued", "Requests that had to wait for a connection.", 1),
    "requests_wait_ms": ("db_pool_requests_wait_seconds", "Time requests spent waiting.", 1000),
    "requests_errors": ("db_pool_requests_errors", "Requests that failed (timeout, pool closed).", 1),
    "usage_ms": ("db_pool_usage_seconds", "Time connections spent checked out.", 1000),
    "returns_bad": ("db_pool_returns_bad", "Connections returned in a bad state.", 1),
    "connections_num": ("db_pool_connections", "Connection attempts to the server.", 1),
    "connections_ms": ("db_pool_connections_seconds", "Time spent opening connections.", 1000),
    "connections_errors": ("db_pool_connections_errors", "Failed connection attempts.", 1),
    "connections_lost": ("db_pool_connections_lost", "Connections found broken.", 1),
}

# Tables per component: the apps whose models live in PostgreSQL. A table not named here takes
# its app's component; tables of apps not listed are left out.
COMPONENT_APPS = {"supervision": "supervision", "agents": "agents", "mistersmith": "bridge", "admin": "audit"}
TABLE_COMPONENTS = {
    "agents_discovery": "discoveries",
    "agents_interactivesession": "sessions",
    "agents_sessionmessage": "sessions",
}
RESTART_OUTCOMES = ("pending", "succeeded", "failed", "timed_out")
RESTART_ORIGINS = ("console", "runtime")


@dataclass
class Scrape:
    """The metric families of one scrape, made on first use, with the labels they take."""

    families: dict[str, Metric] = field(default_factory=dict)

    def gauge(self, name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        if name not in self.families:
            self.families[name] = GaugeMetricFamily(name, documentation, labels=list(labels))
        return self.families[name]  # type: ignore[return-value]

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        if name not in self.families:
            self.families[name] = CounterMetricFamily(name, documentation, labels=list(labels))
        return self.families[name]  # type: ignore[return-value]


# --- The database pool (this process) -----------------------------------------------------------


def pool_metrics(scrape: Scrape) -> None:
    """``db_pool_*`` per pooled database alias, from psycopg_pool's statistics (no query)."""
    from django.db import connections

    for alias, database in settings.DATABASES.items():
        if not database.get("OPTIONS", {}).get("pool"):
            continue
        pool = getattr(connections[alias], "pool", None)
        if pool is None:
            continue
        stats = pool.get_stats()
        for key, (name, documentation) in POOL_GAUGES.items():
            scrape.gauge(name, documentation, ["alias"]).add_metric([alias], stats.get(key, 0))
        size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
        in_use = scrape.gauge("db_pool_in_use", "Connections checked out (size minus available).", ["alias"])
        in_use.add_metric([alias], max(0, size - available))
        for key, (name, documentation, divisor) in POOL_COUNTERS.items():
            scrape.counter(name, documentation, ["alias"]).add_metric([alias], stats.get(key, 0) / divisor)


# --- PostgreSQL: state size, restarts, failures, dead letters -----------------------------------


@dataclass(frozen=True)
class Table:
    name: str
    component: str


def console_tables() -> list[Table]:
    """The console's PostgreSQL tables with their component (one entry per table)."""
    from django.apps import apps
    from django.db import router

    tables: dict[str, Table] = {}
    for config in apps.get_app_configs():
        component = COMPONENT_APPS.get(config.label)
        if component is None:
            continue
        for model in config.get_models():
            meta = model._meta
            if meta.proxy or router.db_for_read(model) != "default":
                continue
            table = meta.db_table
            tables.setdefault(table, Table(table, TABLE_COMPONENTS.get(table, component)))
    return sorted(tables.values(), key=lambda t: t.name)


def _bounded_counts(cursor: Any, tables: list[str]) -> dict[str, int]:
    """Rows per table, counted exactly up to EXACT_COUNT_LIMIT + 1 (one statement)."""
    from django.db import connection

    parts = [
        f"SELECT %s, (SELECT count(*) FROM (SELECT 1 FROM {connection.ops.quote_name(t)} LIMIT %s) s)" for t in tables
    ]
    params: list[Any] = []
    for table in tables:
        params += [table, EXACT_COUNT_LIMIT + 1]
    cursor.execute(" UNION ALL ".join(parts), params)
    return dict(cursor.fetchall())


# The planner's own row estimate of a table (reltuples per page times the pages it has now, as
# PostgreSQL scales it), or the statistics collector's live-tuple count when it was never analyzed.
SIZE_SQL = """
SELECT t.name,
       CASE WHEN c.reltuples >= 0 AND c.relpages > 0
            THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int)
       END,
       coalesce(s.n_live_tup, 0),
       pg_total_relation_size(c.oid)
FROM unnest(%s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
"""

RESTARTS_SQL = """
SELECT outcome, origin, count(*) FROM (
    SELECT {outcome} AS outcome,
           CASE WHEN command_sequence IS NOT NULL THEN 'console' ELSE 'runtime' END AS origin
    FROM supervision_restarts
    WHERE started_at > now() - make_interval(secs => %(window)s)
    ORDER BY started_at DESC
    LIMIT %(cap)s
) recent
GROUP BY 1, 2
"""

# One capped count per reason, each read from supervision_failures_reason_time_idx.
FAILURES_SQL = """
SELECT r.reason::text,
       (SELECT count(*) FROM (
            SELECT 1 FROM supervision_failures f
            WHERE f.failure_reason = r.reason AND f.occurred_at > now() - make_interval(secs => %(window)s)
            LIMIT %(cap)s) s)
FROM unnest(enum_range(NULL::failure_reason)) AS r(reason)
"""

DEAD_LETTERS_SQL = """
SELECT stream, reason, count(*), count(*) FILTER (WHERE received_at > now() - make_interval(secs => %(window)s))
FROM {table}
GROUP BY 1, 2
"""


def _table_sizes(scrape: Scrape, cursor: Any) -> dict[str, int]:
    tables = console_tables()
    names = [t.name for t in tables]
    cursor.execute(SIZE_SQL, [names])
    sizes = {name: (estimate, live, total) for name, estimate, live, total in cursor.fetchall()}
    present = [t for t in tables if t.name in sizes]  # a model whose migration has not run yet: no table
    counts = _bounded_counts(cursor, [t.name for t in present]) if present else {}
    rows = scrape.gauge(
        "mistersmith_table_rows",
        f"Rows per table: exact up to {EXACT_COUNT_LIMIT:,}, PostgreSQL's estimate beyond.",
        ["component", "table"],
    )
    exact = scrape.gauge(
        "mistersmith_table_rows_exact", "1 when mistersmith_table_rows is exact.", ["component", "table"]
    )
    size = scrape.gauge(
        "mistersmith_table_bytes", "Table size on disk, indexes and TOAST included.", ["component", "table"]
    )
    held: dict[str, int] = {}
    for table in present:
        estimate, live, total = sizes[table.name]
        count = counts[table.name]
        is_exact = count <= EXACT_COUNT_LIMIT
        if not is_exact:
            count = max(int(estimate if estimate is not None else live), EXACT_COUNT_LIMIT + 1)
        held[table.name] = count
        labels = [table.component, table.name]
        rows.add_metric(labels, count)
        exact.add_metric(labels, 1 if is_exact else 0)
        size.add_metric(labels, total)
    return held


def _discoveries(scrape: Scrape, held: dict[str, int]) -> None:
    from agents.discoveries import CAPACITY
    from agents.models import Discovery

    table = Discovery._meta.db_table
    if table in held:
        scrape.gauge("mistersmith_discoveries_held", "Discoveries in the console's store.").add_metric([], held[table])
    scrape.gauge("mistersmith_discoveries_capacity", "The discovery store's capacity.").add_metric([], CAPACITY)


def _restarts(scrape: Scrape, cursor: Any, window: int) -> None:
    from supervision.services import RESTART_OUTCOME_SQL

    cursor.execute(RESTARTS_SQL.format(outcome=RESTART_OUTCOME_SQL), {"window": window, "cap": RECENT_CAP})
    counts = {(outcome, origin): n for outcome, origin, n in cursor.fetchall()}
    family = scrape.gauge(
        "mistersmith_supervision_restarts_recent",
        "Restarts started within the window, by their outcome now and who asked (console or runtime).",
        ["outcome", "origin"],
    )
    for outcome in RESTART_OUTCOMES:
        for origin in RESTART_ORIGINS:
            family.add_metric([outcome, origin], counts.get((outcome, origin), 0))


def _failures(scrape: Scrape, cursor: Any, window: int) -> None:
    cursor.execute(FAILURES_SQL, {"window": window, "cap": RECENT_CAP})
    family = scrape.gauge(
        "mistersmith_supervision_failures_recent",
        f"Failures that occurred within the window, by reason (counted up to {RECENT_CAP:,} each).",
        ["reason"],
    )
    for reason, n in cursor.fetchall():
        family.add_metric([reason], n)


def _dead_letters(scrape: Scrape, cursor: Any, window: int) -> None:
    from django.db import connection

    from mistersmith.live.models import DeadLetter

    cursor.execute(
        DEAD_LETTERS_SQL.format(table=connection.ops.quote_name(DeadLetter._meta.db_table)), {"window": window}
    )
    held = scrape.gauge(
        "mistersmith_bridge_dead_letters",
        "Messages the bridge refused, kept in the dead-letter list, by stream and reason.",
        ["stream", "reason"],
    )
    recent = scrape.gauge(
        "mistersmith_bridge_dead_letters_recent",
        "Messages the bridge refused within the window (any bridge process), by stream and reason.",
        ["stream", "reason"],
    )
    for stream, reason, total, in_window in cursor.fetchall():
        held.add_metric([stream, reason], total)
        recent.add_metric([stream, reason], in_window)


def _restart_budgets(scrape: Scrape) -> None:
    """Every node's restart budget (supervision/budgets.py), counted in one statement: aggregate
    gauges only, never one series per node (100,000 nodes would be 100,000 series)."""
    from django.db import DatabaseError, transaction

    from supervision import budgets

    try:
        with transaction.atomic():  # a savepoint: a timeout here leaves the rest of the scrape intact
            summary = budgets.budget_summary()
    except DatabaseError:
        logger.warning("restart budgets not read within the scrape's statement timeout", exc_info=True)
        return
    family = scrape.gauge(
        "mistersmith_restart_budget_nodes",
        "Supervision nodes by restart budget state: exhausted (no restart left in the policy window), "
        "last_slot (one left), ok, no_policy.",
        ["state"],
    )
    for state in budgets.STATES:
        family.add_metric([state], summary[state])
    scrape.gauge(
        "mistersmith_nodes_one_failure_from_escalation",
        "Supervision nodes whose next failure exhausts the restart budget and escalates to the parent.",
    ).add_metric([], summary["escalating"])


def _positions(scrape: Scrape, prefix: str) -> None:
    from mistersmith.live.models import BridgePosition

    family = scrape.gauge(
        "mistersmith_bridge_committed_sequence",
        "The stream sequence a bridge consumer committed with its changes.",
        ["consumer", "stream"],
    )
    for consumer, stream, sequence in BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").values_list(
        "consumer", "stream", "sequence"
    ):
        family.add_metric([consumer, stream], sequence)


def database_metrics(scrape: Scrape) -> None:
    """Everything read from PostgreSQL, in one transaction with a statement timeout."""
    from django.db import connection, transaction

    from mistersmith.live.positions import bridge_consumer_prefix

    window = settings.METRICS_WINDOW_SECONDS
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{DATABASE_TIMEOUT_MS}ms"])
        held = _table_sizes(scrape, cursor)
        _discoveries(scrape, held)
        _restarts(scrape, cursor, window)
        _failures(scrape, cursor, window)
        _dead_letters(scrape, cursor, window)
        _restart_budgets(scrape)
        _positions(scrape, bridge_consumer_prefix())
        _runtime_answers(scrape)


def _runtime_answers(scrape: Scrape) -> None:
    """The runtime's last answers to the bridge's SystemHealth and PoolStatus requests (one query).
    The pool gauges are absent until the runtime answered once; the age says how old they are."""
    from mistersmith.console.dashboard.selectors import runtime_answers

    answers = runtime_answers()
    for name, key, documentation in (
        ("mistersmith_runtime_pool_active", "pool_active", "Agents active in the runtime's pool (its last answer)."),
        ("mistersmith_runtime_pool_capacity", "pool_capacity", "The runtime pool's capacity (its last answer)."),
        ("mistersmith_runtime_pool_available", "pool_available", "Free slots in the runtime's pool (last answer)."),
        ("mistersmith_runtime_healthy", "healthy", "1 when the runtime's last SystemHealth answer said healthy."),
    ):
        figure = answers["figures"][key]
        if isinstance(figure, bool):
            figure = int(figure)
        if isinstance(figure, int | float):
            scrape.gauge(name, documentation).add_metric([], figure)
    asked = scrape.gauge("mistersmith_runtime_request_asked", "1 once the bridge asked the runtime.", ["request"])
    age = scrape.gauge(
        "mistersmith_runtime_answer_age_seconds", "Age of the runtime's last answer (absent: none yet).", ["request"]
    )
    silent = scrape.gauge(
        "mistersmith_runtime_no_answer_seconds",
        "How long the runtime has left the requests unanswered (0 while it answers).",
        ["request"],
    )
    for request, probe in (("SystemHealth", answers["health"]), ("PoolStatus", answers["pool_status"])):
        asked.add_metric([request], 0 if probe["asked_at"] is None else 1)
        if probe["answer_age_seconds"] is not None:
            age.add_metric([request], probe["answer_age_seconds"])
        silent.add_metric([request], probe["no_answer_seconds"] or 0)


def database_reachable(timeout: float) -> bool:
    """Whether a connection can be had within ``timeout`` s: the pool would otherwise keep the
    scrape waiting its full timeout (10 s) while PostgreSQL is down or every connection is busy."""
    from django.db import connection

    if connection.connection is not None:  # this thread holds one already (a test's transaction)
        return True
    pool = getattr(connection, "pool", None)
    if pool is None:
        return True  # unpooled: psycopg's own connect_timeout applies
    from psycopg_pool import PoolTimeout

    pool.open()
    try:
        with pool.connection(timeout=timeout):
            return True
    except PoolTimeout:
        return False


# --- NATS: streams and the bridge's consumers ---------------------------------------------------


_READERS: dict[str, Any] = {}
_READERS_LOCK = threading.Lock()


def _reader(url: str, timeout: float) -> Any:
    """A NATS connection of the scrapes' own, kept between them (per URL): it never creates a
    stream, tries to reconnect once only and logs outages at debug level."""
    from mistersmith.jetstream.client import SyncNats

    with _READERS_LOCK:
        if url not in _READERS:
            _READERS[url] = SyncNats(
                url,
                name="mistersmith-metrics",
                connect_timeout=timeout,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                create_streams=False,
                quiet=True,
            )
        return _READERS[url]


def read_jetstream(url: str, streams: list[str], consumers: list[tuple[str, str]], timeout: float) -> dict:
    """Stream and consumer infos (None for a missing one) within ``timeout``."""
    from mistersmith.jetstream.streams import info_or_none

    reader = _reader(url, timeout)
    js = reader.client().jetstream(timeout=timeout)

    async def read() -> dict:
        stream_infos = await asyncio.gather(*(info_or_none(js.stream_info, name) for name in streams))
        consumer_infos = await asyncio.gather(*(info_or_none(js.consumer_info, s, c) for s, c in consumers))
        return {"streams": dict(zip(streams, stream_infos, strict=True)), "consumers": consumer_infos}

    return reader.run(read(), timeout)


def _limit(value: float | int | None) -> float | int | None:
    return value if value and value > 0 else None


def nats_metrics(scrape: Scrape) -> bool:
    """Stream sizes and limits, and the lag of this installation's bridge consumers."""
    from mistersmith.jetstream.client import nats_url
    from mistersmith.jetstream.streams import STREAMS
    from mistersmith.live.bridge import FEEDS
    from mistersmith.live.positions import bridge_consumer_prefix

    prefix = bridge_consumer_prefix()
    feeds = [(feed.stream, feed.consumer_name(prefix), feed.suffix) for feed in FEEDS]
    found = read_jetstream(
        nats_url(), list(STREAMS), [(stream, name) for stream, name, _ in feeds], settings.METRICS_NATS_TIMEOUT
    )
    labels = ["stream"]
    exists = scrape.gauge("mistersmith_stream_exists", "1 when the contract's stream exists.", labels)
    for name, info in found["streams"].items():
        exists.add_metric([name], 0 if info is None else 1)
        if info is None:
            continue
        state, config = info.state, info.config
        for metric, documentation, value in (
            ("mistersmith_stream_messages", "Messages the stream holds.", state.messages),
            ("mistersmith_stream_bytes", "Bytes the stream holds.", state.bytes),
            ("mistersmith_stream_first_sequence", "The stream's first sequence held.", state.first_seq),
            ("mistersmith_stream_last_sequence", "The stream's last sequence.", state.last_seq),
            ("mistersmith_stream_consumers", "Consumers of the stream (any owner).", state.consumer_count),
            ("mistersmith_stream_max_messages", "The stream's message limit (absent: none).", _limit(config.max_msgs)),
            ("mistersmith_stream_max_bytes", "The stream's byte limit (absent: none).", _limit(config.max_bytes)),
            ("mistersmith_stream_max_age_seconds", "The stream's age limit (absent: none).", _limit(config.max_age)),
        ):
            if value is not None:
                scrape.gauge(metric, documentation, labels).add_metric([name], value)
    _freshness(scrape, prefix)
    labels = ["consumer", "stream", "feed"]
    present = scrape.gauge("mistersmith_bridge_consumer_exists", "1 when the bridge's durable consumer exists.", labels)
    for (stream, name, feed), info in zip(feeds, found["consumers"], strict=True):
        present.add_metric([name, stream, feed], 0 if info is None else 1)
        if info is None:
            continue
        for metric, documentation, value in (
            ("mistersmith_bridge_consumer_pending", "Messages not yet delivered to the bridge.", info.num_pending),
            ("mistersmith_bridge_consumer_ack_pending", "Delivered, not yet acked.", info.num_ack_pending),
            (
                "mistersmith_bridge_consumer_redelivered",
                "Delivered more than once, not yet acked.",
                info.num_redelivered,
            ),
            (
                "mistersmith_bridge_consumer_ack_floor_sequence",
                "Stream sequence acked up to.",
                info.ack_floor.stream_seq,
            ),
        ):
            scrape.gauge(metric, documentation, labels).add_metric([name, stream, feed], value or 0)
    return True


def _freshness(scrape: Scrape, prefix: str) -> None:
    """Per bridge feed, how far it is behind its stream (mistersmith/jetstream/freshness.py), and
    what a first-start catch-up has still to read."""
    from mistersmith.console.dashboard.freshness import bridge_feeds
    from mistersmith.jetstream.client import nats_url
    from mistersmith.jetstream.freshness import feeds_lag, stale_seconds
    from mistersmith.live import catchup as bridge_catchup

    timeout = settings.METRICS_NATS_TIMEOUT
    reader = _reader(nats_url(), timeout)
    js = reader.client().jetstream(timeout=timeout)
    lags = reader.run(feeds_lag(js, bridge_feeds(prefix), stale_after=stale_seconds()), timeout)
    labels = ["feed", "stream"]
    messages = scrape.gauge("mistersmith_feed_lag_messages", "Messages the bridge feed has not yet applied.", labels)
    seconds = scrape.gauge(
        "mistersmith_feed_lag_seconds", "Age of the oldest message the feed has not applied (0: none).", labels
    )
    stale = scrape.gauge("mistersmith_feed_stale", "1 when the feed is behind past MISTERSMITH_STALE_SECONDS.", labels)
    for lag in lags:
        messages.add_metric([lag.feed, lag.stream], lag.messages_behind)
        seconds.add_metric([lag.feed, lag.stream], lag.seconds_behind)
        stale.add_metric([lag.feed, lag.stream], 1 if lag.stale else 0)
    catching_up = bridge_catchup.unfinished(prefix)
    remaining = scrape.gauge(
        "mistersmith_feed_catch_up_remaining",
        "Messages of its stream's history a feed has still to project on its first start (0: caught up).",
        labels,
    )
    for lag in lags:
        row = catching_up.get(lag.feed)
        remaining.add_metric([lag.feed, lag.stream], row.total - row.done if row else 0)


# --- Hive Mind files ----------------------------------------------------------------------------


def hive_metrics(scrape: Scrape) -> bool | None:
    """Sizes of the Hive Mind SQLite files and their write-ahead logs (a stat each, no query).

    True when every file there is readable; None (no verdict) when there are none: an
    installation without claude-flow's hive is not a component that is down."""
    files = {"hive": settings.HIVE_DB_PATH, "hive_memory": settings.HIVE_MEMORY_DB_PATH}
    size = scrape.gauge("mistersmith_hive_file_bytes", "Size of a Hive Mind SQLite file.", ["database", "file"])
    present = scrape.gauge("mistersmith_hive_file_present", "1 when the Hive Mind file exists.", ["database"])
    found, readable = 0, True
    for database, path in files.items():
        exists = os.path.exists(path)
        present.add_metric([database], 1 if exists else 0)
        if exists:
            found += 1
            readable = readable and os.access(path, os.R_OK)
        for kind, suffix in (("main", ""), ("wal", "-wal")):
            try:
                size.add_metric([database, kind], os.stat(f"{path}{suffix}").st_size)
            except FileNotFoundError:
                continue
    return readable if found else None


# --- The bridge running in this process ---------------------------------------------------------


def _capped(counter: dict[str, int]) -> dict[str, int]:
    """At most LABEL_VALUES_CAP label values: the largest, and the rest summed as "other"."""
    if len(counter) <= LABEL_VALUES_CAP:
        return counter
    ordered = sorted(counter.items(), key=lambda item: -item[1])
    kept = dict(ordered[: LABEL_VALUES_CAP - 1])
    kept["other"] = kept.get("other", 0) + sum(n for _, n in ordered[LABEL_VALUES_CAP - 1 :])
    return kept


def bridge_metrics(scrape: Scrape) -> None:
    """The counters of the bridges running in this process (empty when the bridge runs elsewhere;
    mistersmith_bridge_dead_letters_recent covers the rejects of any process)."""
    from mistersmith.live.bridge import RUNNING

    running = scrape.gauge("mistersmith_bridge_running", "1 per bridge running in this process.", ["bridge"])
    processed = scrape.counter(
        "mistersmith_bridge_events_processed",
        "Messages the in-process bridge applied or passed on, by kind.",
        ["bridge", "kind"],
    )
    rejected = scrape.counter(
        "mistersmith_bridge_events_rejected",
        "Messages the in-process bridge refused, by reason.",
        ["bridge", "reason"],
    )
    for prefix, stats in list(RUNNING.items()):
        running.add_metric([prefix], 1)
        for kind, n in _capped(dict(stats.processed)).items():
            processed.add_metric([prefix, kind], n)
        for reason, n in _capped(dict(stats.rejected)).items():
            rejected.add_metric([prefix, reason], n)


# --- The collector ------------------------------------------------------------------------------


class ConsoleCollector(Collector):
    """Reads every part at scrape time; a part that fails reports ``mistersmith_up`` 0."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def describe(self) -> list[Metric]:
        # Nothing announced in advance: registering must not query PostgreSQL or NATS.
        return []

    def collect(self) -> Iterator[Metric]:
        scrape = Scrape()
        up = scrape.gauge("mistersmith_up", "1 when this scrape could read the component.", ["component"])
        seconds = scrape.gauge("mistersmith_metrics_part_seconds", "Time this scrape spent per part.", ["part"])
        scrape.gauge("mistersmith_metrics_window_seconds", "The window of the *_recent metrics.").add_metric(
            [], settings.METRICS_WINDOW_SECONDS
        )
        parts: list[tuple[str, str | None, Callable[[Scrape], Any]]] = [
            ("pool", None, pool_metrics),
            ("postgresql", "postgresql", self._database),
            ("nats", "nats", nats_metrics),
            ("hive", "hive", hive_metrics),
            ("bridge", None, bridge_metrics),
        ]
        for part, component, read in parts:
            started = time.perf_counter()
            try:
                ok = read(scrape)  # True: read; False: could not be; None: nothing to judge
            except Exception as error:
                ok = False
                # Said once when a part starts failing, not at every scrape of an outage.
                level = logging.DEBUG if part in self.failing else logging.WARNING
                logger.log(level, "metrics: %s not read: %s", part, error)
            if ok is False:
                self.failing.add(part)
            else:
                self.failing.discard(part)
            seconds.add_metric([part], round(time.perf_counter() - started, 6))
            if component is not None and ok is not None:
                up.add_metric([component], 1 if ok else 0)
        yield from scrape.families.values()

    @staticmethod
    def _database(scrape: Scrape) -> bool:
        if not database_reachable(settings.METRICS_DATABASE_TIMEOUT):
            return False
        database_metrics(scrape)
        return True


COLLECTOR = ConsoleCollector()
_registered = threading.Lock()
_done: list[CollectorRegistry] = []


def register(registry: CollectorRegistry = REGISTRY) -> None:
    """Add the console's collector to ``registry`` once (the view does this on import)."""
    with _registered:
        if registry not in _done:
            registry.register(COLLECTOR)
            _done.append(registry)
