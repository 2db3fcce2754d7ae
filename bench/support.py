"""What the benchmarks share: a database of their own, timing and query counting."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext


@contextmanager
def bench_database(suffix: str = "bench") -> Iterator[str]:
    """Point the default connection at ``<name>_<suffix>`` (created and migrated when missing)."""
    from django.conf import settings

    settings_dict = connection.settings_dict
    original = settings_dict["NAME"]
    settings_dict.setdefault("TEST", {})["NAME"] = f"{original}_{suffix}"
    # serialize=False: a test database serializes its whole content for TransactionTestCase rollbacks,
    # minutes for the million-row data set, on every benchmark start; benchmarks never roll back to it.
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=True)
    try:
        yield name
    finally:
        connection.close()
        # create_test_db points the connection (and settings) at the bench database: point them back,
        # so that the next benchmark of the same run names <name>_<suffix>, not <name>_<suffix>_<suffix>.
        settings_dict["NAME"] = settings.DATABASES[connection.alias]["NAME"] = original


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


def admin_client() -> object:
    """A Django test client logged in as the benchmarks' superuser (created once per bench database)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


# --- For benchmarks that run the console (or its bridge) in a process of its own ----------------


def free_port() -> int:
    """A TCP port nobody listens on now (for a server started by the benchmark)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must use this process's bench database and NATS:
    DATABASE_URL names the bench database (inside ``bench_database()``), NATS_URL the server in use
    (so the child joins, rather than manages, an embedded one). REDIS_URL is passed on as it is."""
    import os

    from mistersmith.embedded import postgres_url
    from mistersmith.jetstream.client import nats_url

    env = dict(os.environ)
    env.update({"DATABASE_URL": postgres_url(connection.settings_dict), "NATS_URL": nats_url(), **extra})
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


def bridge_consumers_exist(prefix: str) -> bool:
    """True once every durable consumer of a bridge started with ``prefix`` exists."""
    from mistersmith.live.bridge import consumers_exist

    return consumers_exist(prefix)


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted list (``fraction`` in 0..1)."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def machine() -> str:
    """One line about the machine the figures come from (they depend on it)."""
    import os

    import psutil

    memory_gib = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores, {memory_gib:.0f} GiB"
