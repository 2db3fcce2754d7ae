"""A stand-in MisterSmith runtime for demos, tests and benchmarks (``manage.py simulate``).

It plays the runtime against the console's own PostgreSQL and NATS, so the console can be shown,
tested and measured without the Rust runtime. By default it sends only what the real runtime sends
(command replies, Spawned and Terminated, PoolStatus and SystemHealth answers, shared discoveries) and
writes what the runtime's supervision writes (``tables``); ``rich_events`` adds the events the runtime
defines but never publishes (``runtime`` says which). Failures are healed by their supervisors' policies,
and the console's RestartNode commands are answered with RestartCompleted.

Start it with :func:`run_simulator` inside an event loop, or :class:`SimulatorThread` beside a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from mistersmith.simulator.options import DEFAULT_CONSUMER, SimulatorOptions, SimulatorStats
from mistersmith.simulator.runtime import Simulator

__all__ = ["DEFAULT_CONSUMER", "SimulatorOptions", "SimulatorStats", "SimulatorThread", "run_simulator"]
logger = logging.getLogger(__name__)


async def run_simulator(
    options: SimulatorOptions,
    stop: asyncio.Event | None = None,
    *,
    stats: SimulatorStats | None = None,
    on_ready: Callable[[], object] | None = None,
) -> SimulatorStats:
    """Play the runtime until ``stop`` is set or ``options.duration`` passes; return what it did.

    ``on_ready`` is called once the tree exists and the restart consumer listens; ``stats`` may be
    passed in to watch the counts while it runs. Raises ValueError for bad options.
    """
    options.validate()
    stats = stats if stats is not None else SimulatorStats()
    simulator = Simulator(options, stats)
    try:
        await simulator.open()
        await simulator.run(stop or asyncio.Event(), on_ready)
    finally:
        await simulator.close()
    return stats


class SimulatorThread(threading.Thread):
    """The simulator on a thread and event loop of its own, e.g. inside ``manage.py run``'s process.

    ``start()``, then ``ready.wait()``; ``stop()`` ends it cleanly and joins. ``error`` holds what
    stopped it early, if anything.
    """

    def __init__(self, options: SimulatorOptions) -> None:
        super().__init__(name="simulator", daemon=True)
        self.options = options
        self.stats = SimulatorStats()
        self.ready = threading.Event()  # set once running, or once it failed to start (see ``error``)
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop_event = asyncio.Event()

    def run(self) -> None:
        try:
            self._loop.run_until_complete(
                run_simulator(self.options, self._stop_event, stats=self.stats, on_ready=self.ready.set)
            )
        except Exception as error:
            self.error = error
            logger.exception("simulator stopped by an error")
        finally:
            self.ready.set()
            self._loop.close()

    def stop(self, timeout: float = 30) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may have finished already
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout)
