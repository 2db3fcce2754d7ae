"""The ASGI server of ``manage.py run`` (and of the tests' console processes): uvicorn, with a stop
that is clean and bounded.

A stop (SIGTERM from ``docker stop`` or systemd, or Ctrl-C) goes, within
``settings.STOP_TIMEOUT_SECONDS`` (``MISTERSMITH_STOP_TIMEOUT``, default 10 s):

1. no new connections;
2. every live socket is closed with 1001 ("going away": the page reconnects, to another worker
   behind a load balancer) and its consumer ends (``mistersmith.live.consumer.close_live_sockets``);
3. uvicorn's own drain of what is left (HTTP requests in flight; a socket that did not close gets
   uvicorn's 1012), bounded by what remains of the budget;
4. the lifespan shutdown stops the in-process bridge (``mistersmith.asgi``), bounded too;
5. the process exits. Should anything still hang, a watchdog ends the process at the deadline:
   without it, one consumer task that never ended kept a worker in "Waiting for background tasks
   to complete" until ``docker stop`` or systemd killed it (issue 16).

Live sockets are pinged every ``WS_PING_INTERVAL`` s; one whose pong is ``WS_PING_TIMEOUT`` s late
is closed, which ends its consumer (a client gone without a close).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)

SOCKETS_SHARE = 0.3  # of the stop budget: closing the live sockets and waiting for their consumers
BRIDGE_SHARE = 0.3  # of the stop budget: the lifespan shutdown (the in-process bridge)
EXIT_MARGIN = 0.5  # seconds left for the interpreter's own exit (atexit, embedded services)


def stop_budget() -> float:
    from django.conf import settings

    return settings.STOP_TIMEOUT_SECONDS


def bridge_stop_seconds() -> float:
    """How long the lifespan shutdown waits for the in-process bridge before cancelling it."""
    return stop_budget() * BRIDGE_SHARE


class ConsoleServer(uvicorn.Server):
    """uvicorn's server with the console's stop: live sockets closed with 1001 first, every phase
    bounded, a watchdog at the deadline."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_deadline: float | None = None  # time.monotonic() by which the process is gone

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + stop_budget()
            threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()
        super().handle_exit(sig, frame)

    def _watchdog(self) -> None:
        """Ends the process at the deadline if the graceful stop has not (a daemon thread: a
        finished stop exits without waiting for it)."""
        assert self.stop_deadline is not None
        time.sleep(max(0.0, self.stop_deadline - time.monotonic()))
        logger.error("the stop took longer than %.0f s: exiting now", stop_budget())
        logging.shutdown()
        os._exit(1)

    def remaining(self) -> float:
        if self.stop_deadline is None:  # a stop not started by a signal (tests, an embedding)
            self.stop_deadline = time.monotonic() + stop_budget()
        return self.stop_deadline - time.monotonic()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from mistersmith.live.consumer import close_live_sockets

        budget = stop_budget()
        started = time.monotonic()
        for server in self.servers:  # no new connections while the open ones are closed
            server.close()
        closed, left = await close_live_sockets(timeout=min(budget * SOCKETS_SHARE, self.remaining()))
        logger.info("stop: %d live sockets closed (1001), %d did not end in time", closed, left)
        # uvicorn's drain gets what the bridge and the exit do not need.
        self.config.timeout_graceful_shutdown = max(  # type: ignore[assignment]  # uvicorn takes a float too
            0.1, self.remaining() - budget * BRIDGE_SHARE - EXIT_MARGIN
        )
        await super().shutdown(sockets)
        logger.info("stop: done in %.1f s", time.monotonic() - started)


def uvicorn_config(host: str, port: int, log_level: str | None = None) -> uvicorn.Config:
    """The console's uvicorn settings, in one place for ``manage.py run`` and the tests."""
    from django.conf import settings

    return uvicorn.Config(
        "mistersmith.asgi:application",
        host=host,
        port=port,
        lifespan="on",
        # Compressing every frame for every socket was a quarter of the server's time at
        # 50 sockets (bench/live_latency.py); frames are small JSON, sent uncompressed.
        ws_per_message_deflate=False,
        ws_ping_interval=settings.WS_PING_INTERVAL_SECONDS,
        ws_ping_timeout=settings.WS_PING_TIMEOUT_SECONDS,
        timeout_graceful_shutdown=max(1, int(settings.STOP_TIMEOUT_SECONDS)),  # reset per stop, see shutdown()
        log_level=log_level or os.environ.get("UVICORN_LOG_LEVEL", "warning"),
    )


def serve(host: str, port: int, log_level: str | None = None) -> None:
    """Serve until a stop signal; return once the stop is done (see the module's docstring)."""
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler it
    # found: the default one would kill the process before its exit handlers stop the embedded
    # PostgreSQL and NATS (a `docker stop` or systemd stop left both running). Exit instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C is raised again by uvicorn once its stop is done: nothing is left to do then.
    with contextlib.suppress(KeyboardInterrupt):
        ConsoleServer(uvicorn_config(host, port, log_level)).run()


def main(argv: list[str] | None = None) -> None:
    """``python -m mistersmith.live.server --port N``: the server of ``manage.py run`` without its setup
    (migrations, admin user, demo, stand-in): what the tests start as a process of its own."""
    parser = argparse.ArgumentParser(prog="python -m mistersmith.live.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default=None)
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mistersmith.settings")
    import django

    django.setup()
    serve(options.host, options.port, options.log_level)


if __name__ == "__main__":
    main()
