"""Every console changelist side by side with Django's own user changelist, at scale.

The data set: 100,000 supervision nodes (their agents, policies and child states) and 1,000,000
failures (and their restarts), seeded once into a database of its own (``<name>_bench_scale``) and
kept; 100 users, so that Django's user changelist shows the page it shows everywhere. The console's
changelists are measured against that page in one run, interleaved round by round (page A, page B,
..., then again), so that whatever else the machine does at the time weighs on all of them alike:
the ratio is the figure to compare between runs, not the milliseconds.

Figures per changelist: median wall time and CPU time of this process (the test client runs the
view in process: CPU is Python's work, the rest is waiting for PostgreSQL), the query count, and
the ratio of the medians to the user changelist's. Target (issue 14): ratio <= 1.5.

Then the load mix of ``load_admin`` (bench/admin_users.py: the same pages, with the same weights),
its CPU per page in process: target <= 35 ms.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.support import admin_client, bench_database, machine

NODES = 100_000
FAILURES = 1_000_000
USERS = 100
ROUNDS = 15
WARMUP = 2
TARGET_RATIO = 1.5
TARGET_MIX_CPU_MS = 35
REFERENCE = "/admin/auth/user/"

# The pages of bench/admin_users.py (the load_admin mix), with its task weights.
LOAD_MIX = [
    ("/admin/", 2),
    ("/admin/supervision/supervisionnode/", 2),
    ("/admin/supervision/supervisionfailure/", 2),
    ("/admin/supervision/supervisionfailure/?failure_reason__exact=Crash", 1),
    ("/admin/agents/agent/", 2),
    ("/admin/supervision/tree/", 2),
    ("/admin/live/snapshot/", 3),
    ("/admin/agents/live/snapshot/", 3),
]


def ensure_scale() -> None:
    """The 100,000-node, 1,000,000-failure installation and 100 users (written once, then kept)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from mistersmith.simulator import demo
    from supervision.models import SupervisionNode

    if not SupervisionNode.objects.filter(node_id="scale-root").exists():
        demo.seed(prefix="scale", nodes=NODES, failures=FAILURES, hive=False)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # planner estimates (the estimated counts) for the new rows
    model = get_user_model()
    missing = USERS - model.objects.filter(username__startswith="scale-user-").count()
    if missing > 0:
        hashed = make_password(None)  # unusable: nobody logs in as them
        start = USERS - missing
        model.objects.bulk_create(
            model(username=f"scale-user-{i:03d}", password=hashed, email=f"user{i}@example.com")
            for i in range(start, USERS)
        )


def changelist_urls() -> list[str]:
    """The changelist of every model registered with the console's admin site (the user one first)."""
    from django.contrib import admin
    from django.urls import reverse

    urls = [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
        if model._meta.app_label != "hive"  # hive's tables live in the swarm's SQLite files, not at scale here
    ]
    urls.remove(REFERENCE)
    return [REFERENCE, *sorted(urls)]


def timed(get: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    get()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def side_by_side(client, urls: list[str], rounds: int) -> dict[str, dict]:
    """Each URL once per round, ``rounds`` times; medians of wall and CPU time, the query count."""

    def getter(url: str) -> Callable[[], object]:
        def get():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        return get

    figures: dict[str, dict] = {}
    for url in urls:
        for _ in range(WARMUP):
            getter(url)()
        with CaptureQueriesContext(connection) as queries:
            getter(url)()
        figures[url] = {"queries": len(queries.captured_queries), "wall": [], "cpu": []}
    for _ in range(rounds):
        for url in urls:
            wall, cpu = timed(getter(url))
            figures[url]["wall"].append(wall)
            figures[url]["cpu"].append(cpu)
    return {
        url: {
            "median_ms": round(statistics.median(f["wall"]), 1),
            "cpu_ms": round(statistics.median(f["cpu"]), 1),
            "queries": f["queries"],
        }
        for url, f in figures.items()
    }


def run() -> Iterator[dict]:
    with bench_database("bench_scale"):
        ensure_scale()
        client = admin_client()
        urls = changelist_urls()
        mix_urls = [url for url, _ in LOAD_MIX]
        figures = side_by_side(client, urls + [url for url in mix_urls if url not in urls], ROUNDS)
        reference = figures[REFERENCE]
        scale = {"nodes": NODES, "failures": FAILURES, "users": USERS, "rounds": ROUNDS}
        yield {"figure": "changelist_reference", "page": REFERENCE, **reference, **scale, "machine": machine()}
        for url in urls[1:]:
            page = figures[url]
            yield {
                "figure": "changelist_ratio",
                "page": url,
                **page,
                "ratio": round(page["median_ms"] / reference["median_ms"], 2),
                "cpu_ratio": round(page["cpu_ms"] / max(0.1, reference["cpu_ms"]), 2),
                "reference_ms": reference["median_ms"],
                "target": {"ratio": TARGET_RATIO},
            }
        weights = sum(weight for _, weight in LOAD_MIX)
        mix_cpu = sum(figures[url]["cpu_ms"] * weight for url, weight in LOAD_MIX) / weights
        mix_wall = sum(figures[url]["median_ms"] * weight for url, weight in LOAD_MIX) / weights
        yield {
            "figure": "load_mix_per_page",
            "cpu_ms": round(mix_cpu, 1),
            "median_ms": round(mix_wall, 1),
            "pages": {url: figures[url]["cpu_ms"] for url, _ in LOAD_MIX},
            **scale,
            "target": {"cpu_ms": TARGET_MIX_CPU_MS},
        }
