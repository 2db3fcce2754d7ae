"""The state verification matrix (the seed's "State Verification Matrix", issue 5).

One run checks the eight stateful components of an installation and answers a row per check:
component, check, expected, found, status (ok / degraded / failed) and a hint for the fix.
``manage.py verify_state``, the admin page and its JSON endpoint show the same :class:`Report`;
``/readyz`` asks :func:`readiness`, the few checks that matter for serving.

Why it is shaped this way:
- Every component is guarded: an exception becomes a failed row, never a traceback, so a report
  comes back with NATS or PostgreSQL down. The database is probed first with a short timeout,
  and the components that need it are marked failed at once if it does not answer, instead of
  each waiting out the pool's 10 s.
- Fast (target under 2 s): a constant number of queries per component, each component in a
  transaction of its own under a statement timeout; NATS and the WebSocket checks on an event
  loop in a thread, at the same time as the database checks.
- Read-only: nothing is created, started or fixed by a check (see :mod:`.verify_live` and
  :mod:`.verify_hive` for why that needs care).

The checks live in :mod:`.verify_database`, :mod:`.verify_schema`, :mod:`.verify_hive` and
:mod:`.verify_live`; :mod:`.matrix` has the row and report types.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from mistersmith.operations.verify import live as verify_live
from mistersmith.operations.verify.database import (
    agent_rows,
    discovery_rows,
    pool_rows,
    probe_database,
    session_rows,
)
from mistersmith.operations.verify.hive import hive_rows
from mistersmith.operations.verify.matrix import (
    COMPONENTS,
    DEGRADED,
    FAILED,
    OK,
    PROBE_TIMEOUT,
    Report,
    Row,
    error_text,
)
from mistersmith.operations.verify.schema import supervision_rows

__all__ = ["COMPONENTS", "DEGRADED", "FAILED", "OK", "Report", "Row", "readiness", "run"]

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 1500
LIVE_BUDGET = 4.0  # seconds: NATS (connect, then every stream and consumer at once) and the sockets
DATABASE_CHECKS: dict[str, tuple[Callable[[], list[Row]], str]] = {
    "agent_state": (agent_rows, "The agents tables do not answer: run manage.py migrate."),
    "supervision_db": (supervision_rows, "The supervision schema does not answer: run manage.py migrate."),
    "discovery_store": (discovery_rows, "The discovery store does not answer: run manage.py migrate."),
    "sessions": (session_rows, "The sessions table does not answer: run manage.py migrate."),
}


def _failure(component: str, error: BaseException | str, hint: str, check: str = "check runs") -> Row:
    found = error if isinstance(error, str) else error_text(error)
    return Row(component, check, "an answer", found or "no answer", FAILED, hint)


def _guarded(component: str, hint: str, check: Callable[[], list[Row]], *, database: bool = False) -> list[Row]:
    """The rows of ``check``, or one failed row naming its error. A database check runs in a
    transaction (a savepoint inside one) under a statement timeout: its error rolls back its own
    work only, and a locked table costs it the timeout at most."""
    try:
        if not database:
            return check()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            return check()
    except Exception as error:
        logger.debug("verify_state: %s failed", component, exc_info=True)
        return [_failure(component, error, hint)]


def in_thread(coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
    """Run a coroutine on a new event loop in a thread of its own, whatever the caller runs in
    (a command, a synchronous view in an ASGI worker thread, a test)."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
    future = executor.submit(asyncio.run, coroutine)
    executor.shutdown(wait=False)
    return future


async def _live_rows(url: str, streams: dict[str, Any], prefix: str, base_url: str | None) -> list[list[Row]]:
    async def guarded(component: str, hint: str, rows: Coroutine[Any, Any, list[Row]]) -> list[Row]:
        try:
            return await asyncio.wait_for(rows, LIVE_BUDGET - 0.5)
        except Exception as error:
            logger.debug("verify_state: %s failed", component, exc_info=True)
            return [_failure(component, error, hint)]

    return list(
        await asyncio.gather(
            guarded("jetstream", "Is NATS up?", verify_live.jetstream_rows(url, streams, prefix)),
            guarded(
                "browser", "Check CHANNEL_LAYERS and mistersmith/live/routing.py.", verify_live.browser_rows(base_url)
            ),
        )
    )


def run(
    *,
    base_url: str | None = None,
    nats_url: str | None = None,
    streams: dict[str, Any] | None = None,
    consumer_prefix: str | None = None,
) -> Report:
    """Check every component; rows in the order of :data:`COMPONENTS`.

    ``base_url``: a running console whose live socket is opened for real. ``nats_url``, ``streams``
    and ``consumer_prefix`` default to the console's own: NATS_URL or the embedded server, the
    contract's four streams, MISTERSMITH_BRIDGE_PREFIX.
    """
    from mistersmith.jetstream.streams import STREAMS
    from mistersmith.live.positions import bridge_consumer_prefix

    started, checked_at = time.perf_counter(), timezone.now()
    url = nats_url or verify_live.console_nats_url()
    live = in_thread(_live_rows(url, streams or STREAMS, consumer_prefix or bridge_consumer_prefix(), base_url))
    found: dict[str, list[Row]] = {}
    database_up = False
    try:
        probe_ms = probe_database()
    except Exception as error:
        hint = "PostgreSQL does not answer: is it up, is DATABASE_URL right, is the pool exhausted?"
        found["db_pool"] = [_failure("db_pool", error, hint, check="database answers")]
        for component in DATABASE_CHECKS:
            skipped = "not checked: the database did not answer"
            found[component] = [_failure(component, skipped, "See db_pool.", check="database answers")]
    else:
        database_up = True
        for component, (check, hint) in DATABASE_CHECKS.items():
            found[component] = _guarded(component, hint, check, database=True)
        found["db_pool"] = _guarded("db_pool", "Check DATABASE_POOL.", lambda: pool_rows(probe_ms))
    found["hive_mind"] = _guarded("hive_mind", "Check HIVE_MIND_DIR.", hive_rows)
    try:
        found["jetstream"], found["browser"] = live.result(timeout=LIVE_BUDGET)
    except Exception as error:
        found["jetstream"] = [_failure("jetstream", error or "timed out", "Is NATS up?")]
        found["browser"] = [_failure("browser", error or "timed out", "Check CHANNEL_LAYERS.")]
    if database_up and found["jetstream"][0].status != FAILED:  # NATS away says it all for the runtime
        hint = "The runtime's answers are kept in mistersmith_runtimeprobe: run manage.py migrate."
        found["jetstream"] += _guarded("jetstream", hint, verify_live.runtime_rows, database=True)
        prefix = consumer_prefix or bridge_consumer_prefix()
        hint = "The catch-up is kept in mistersmith_catchup: run manage.py migrate."
        found["jetstream"] += _guarded("jetstream", hint, lambda: verify_live.catch_up_rows(prefix), database=True)
    rows = [row for component in COMPONENTS for row in found.get(component, [])]
    return Report(rows=rows, checked_at=checked_at, duration_ms=(time.perf_counter() - started) * 1000)


# --- Readiness ---------------------------------------------------------------------------------

READINESS_COMPONENTS = ("database", "nats", "channel_layer")


async def _live_readiness(url: str) -> dict[str, bool]:
    async def answers(check: Coroutine[Any, Any, None]) -> bool:
        try:
            await asyncio.wait_for(check, PROBE_TIMEOUT + 1)
        except Exception:
            logger.debug("readiness check failed", exc_info=True)
            return False
        return True

    nats_ok, layer_ok = await asyncio.gather(
        answers(verify_live.nats_ready(url)), answers(verify_live.channel_layer_ready())
    )
    return {"nats": nats_ok, "channel_layer": layer_ok}


def readiness() -> dict[str, bool]:
    """Whether this process can serve, per component (:data:`READINESS_COMPONENTS`): the database
    answers, NATS answers with JetStream, the channel layer carries a message."""
    live = in_thread(_live_readiness(verify_live.console_nats_url()))
    try:
        probe_database(explain=False)  # nobody reads the reason: /readyz names no details
        database = True
    except Exception:
        logger.debug("readiness: the database did not answer", exc_info=True)
        database = False
    try:
        answers = live.result(timeout=2 * PROBE_TIMEOUT + 2)
    except Exception:
        answers = {"nats": False, "channel_layer": False}
    return {"database": database, **answers}
