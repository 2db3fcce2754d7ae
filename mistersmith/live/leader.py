"""One active bridge per consumer prefix; the others stand by and take over when it goes.

Several bridges may run for availability (one per worker, or ``manage.py bridge`` on two
machines), all bound to the same durable consumers. Sharing a pull consumer would split its
messages between them, and two bridges applying one agent's events in parallel would apply them
out of order (the agents feed keeps a position: a batch committed after a later one would be
skipped as a replay). So the bridges elect one with a PostgreSQL session advisory lock (NATS 2.9
has no pinned consumers): the bridge that holds it consumes, the others retry every second.

The lock lives on a connection of its own, outside the pool, for as long as the bridge leads. If
that connection dies (PostgreSQL restarted), the lock is gone: the leader notices within
``CHECK_SECONDS`` and stops, and a new leader that finds the feed's position changed within
``TAKEOVER_GRACE_SECONDS`` waits that long first, so the two never fetch at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import zlib
from datetime import timedelta

import psycopg
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

logger = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x4D53  # "MS": the first key of pg_try_advisory_lock(int, int)
CHECK_SECONDS = 1.0
TAKEOVER_GRACE_SECONDS = 3.0
APPLICATION_NAME = "mistersmith-bridge-lock"


class LeadershipLost(Exception):
    """The bridge's lock connection died: another bridge may lead now."""


def lock_key(consumer_prefix: str) -> int:
    """A stable signed 32-bit key for a prefix (bridges of different prefixes are independent)."""
    return zlib.crc32(consumer_prefix.encode()) - 2**31


class Leadership:
    def __init__(self, consumer_prefix: str) -> None:
        self.consumer_prefix = consumer_prefix
        self.key = lock_key(consumer_prefix)
        self.connection: psycopg.Connection | None = None

    def _try(self) -> bool:
        if self.connection is None or self.connection.closed:
            params = connections["default"].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params["application_name"] = f"{APPLICATION_NAME} pid={os.getpid()}"  # who leads, for operators
            self.connection = psycopg.connect(**params, autocommit=True)
        row = self.connection.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, self.key]).fetchone()
        return bool(row and row[0])

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this bridge leads (True) or ``stop`` is set (False)."""
        attempt = sync_to_async(self._try, thread_sensitive=False)
        said = False
        while not stop.is_set():
            if await attempt():
                await self._grace(stop)
                logger.info("bridge %s: leading", self.consumer_prefix)
                return not stop.is_set()
            if not said:
                logger.info("bridge %s: another bridge leads; standing by", self.consumer_prefix)
                said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
        return False

    async def _grace(self, stop: asyncio.Event) -> None:
        """A feed position moved just now: a leader whose lock died with its connection may still be
        fetching. Give it the time to notice (it checks every CHECK_SECONDS)."""
        from mistersmith.live.models import BridgePosition

        @sync_to_async(thread_sensitive=False)
        def recently_active() -> bool:
            try:
                since = timezone.now() - timedelta(seconds=TAKEOVER_GRACE_SECONDS)
                prefix = f"{self.consumer_prefix}-"
                return BridgePosition.objects.filter(consumer__startswith=prefix, updated_at__gte=since).exists()
            finally:
                connections.close_all()

        if await recently_active():
            logger.info(
                "bridge %s: another bridge was active just now; taking over in %s s",
                self.consumer_prefix,
                TAKEOVER_GRACE_SECONDS,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TAKEOVER_GRACE_SECONDS)

    def _check(self) -> None:
        try:
            self.connection.execute("SELECT 1")
        except (psycopg.Error, AttributeError) as error:
            raise LeadershipLost(f"bridge {self.consumer_prefix}: lost its leadership lock ({error})") from error

    async def hold(self, stop: asyncio.Event) -> None:
        """Check the lock's connection every CHECK_SECONDS; raise LeadershipLost when it is gone."""
        check = sync_to_async(self._check, thread_sensitive=False)
        while not stop.is_set():
            await check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)

    def release(self) -> None:
        if self.connection is not None and not self.connection.closed:
            with contextlib.suppress(psycopg.Error):
                self.connection.close()  # closing the session releases its advisory lock
        self.connection = None

    def __repr__(self) -> str:
        return f"Leadership({self.consumer_prefix!r}, key={self.key})"


def leader_pids(consumer_prefix: str) -> list[int]:
    """The process ids of the bridges that hold the prefix's lock (one at most), from PostgreSQL."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s""",
            [LOCK_NAMESPACE, lock_key(consumer_prefix) & 0xFFFFFFFF],
        )
        names = [row[0] for row in cursor.fetchall()]
    return [int(name.rsplit("pid=", 1)[1]) for name in names if "pid=" in name]
