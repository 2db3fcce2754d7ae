"""The console's NATS connection, for synchronous code (views, services, commands).

nats-py is asyncio-only and Django's views are synchronous, so one connection per process
lives on an event loop in a background thread; synchronous callers hand it coroutines and
wait for the answer with a timeout. Connecting also creates any missing contract stream, so a
publish through JetStream always has a stream to land in.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

import nats
from django.conf import settings
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import PubAck

from mistersmith import embedded
from mistersmith.jetstream.database_work import release_connections
from mistersmith.jetstream.streams import ensure_streams

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT = 5.0


class NatsUnavailable(RuntimeError):
    """NATS could not be reached or did not answer in time; nothing was published."""


def servers(url: str) -> list[str]:
    """NATS_URL may name a cluster: ``nats://a:4222,nats://b:4222``; nats-py wants a list."""
    return [part.strip() for part in url.split(",") if part.strip()]


@cache
def nats_url() -> str:
    """NATS_URL, or the embedded server (started on first use)."""
    return settings.NATS_URL or embedded.nats_url(settings.VAR_DIR)


class SyncNats:
    """One NATS connection on a private event loop, usable from any thread.

    The defaults are the console's own connection: a few reconnect attempts, and the contract's
    streams made on connect. A reader that must never create anything and must answer within a
    budget (``/metrics``) passes ``create_streams=False`` and a short ``connect_timeout``.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "mistersmith-console",
        connect_timeout: float = 2,
        max_reconnect_attempts: int = 3,
        reconnect_time_wait: float = 0.5,
        create_streams: bool = True,
        quiet: bool = False,
    ) -> None:
        self.url = url
        self.name = name
        self.connect_timeout = connect_timeout
        self.max_reconnect_attempts = max_reconnect_attempts  # nats-py: 0 would retry forever
        self.reconnect_time_wait = reconnect_time_wait
        self.create_streams = create_streams
        self.error_cb = _log_quietly if quiet else _log_error  # a scraper logs outages at debug level
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-client", daemon=True)
        self._thread.start()
        self._client: Client | None = None
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Run ``coroutine`` on the connection's loop and wait up to ``timeout`` s for its result.

        The calling thread's database connections go back to the pool first (outside a
        transaction): a wait on NATS never holds one (mistersmith.jetstream.database_work)."""
        release_connections()
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as error:
            future.cancel()
            raise NatsUnavailable(f"NATS at {self.url} did not answer within {timeout:g} s.") from error
        except (NatsError, OSError) as error:
            raise NatsUnavailable(f"NATS at {self.url} is unavailable: {error}") from error

    def client(self) -> Client:
        with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = self.run(self._connect(), self.connect_timeout + DEFAULT_TIMEOUT)
            return self._client

    async def _connect(self) -> Client:
        # A few reconnect attempts only: a connection that gives up is closed, and the next
        # call makes a new one; a caller is never kept waiting on an outage past its timeout.
        client = await nats.connect(
            servers(self.url),
            name=self.name,
            connect_timeout=self.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=self.max_reconnect_attempts,
            reconnect_time_wait=self.reconnect_time_wait,
            error_cb=self.error_cb,
        )
        if not self.create_streams:
            return client
        try:
            await ensure_streams(client.jetstream())
        except BaseException:  # e.g. no room in the store: close it, or every retry leaks a connection
            await client.close()
            raise
        return client

    def publish(
        self, subject: str, payload: dict | bytes, *, msg_id: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> PubAck:
        """Publish through JetStream and wait for the stream's ack (``Nats-Msg-Id`` de-duplicates)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        client = self.client()
        return self.run(client.jetstream().publish(subject, data, timeout=timeout, headers=headers), timeout + 1)

    def request(self, subject: str, payload: dict | bytes, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """A core NATS request; returns the reply message."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
        client = self.client()
        return self.run(client.request(subject, data, timeout=timeout), timeout + 1)

    def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            try:
                self.run(self._client.close(), 5)
            except NatsUnavailable:
                logger.warning("NATS connection did not close cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def _log_error(error: Exception) -> None:
    logger.warning("NATS: %s", error)


async def _log_quietly(error: Exception) -> None:
    logger.debug("NATS: %s", error)


_connection: SyncNats | None = None
_connection_lock = threading.Lock()


def connection() -> SyncNats:
    """The process's NATS connection (created on first use)."""
    global _connection
    with _connection_lock:
        if _connection is None:
            _connection = SyncNats(nats_url())
            # Registered after the embedded server's own exit handler, so it runs before it.
            atexit.register(reset_connection)
        return _connection


def reset_connection() -> None:
    """Close the process's connection; the next call to :func:`connection` makes a new one."""
    global _connection
    with _connection_lock:
        if _connection is not None:
            _connection.close()
        _connection = None
