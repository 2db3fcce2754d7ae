"""manage.py bridge: the JetStream consumer as a process of its own (several may share the work)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from mistersmith.live.bridge import BridgeStats, run_bridge_supervised


class Command(BaseCommand):
    help = "Consume the runtime's streams and apply them to the console (runs until stopped)."

    def handle(self, *args: Any, **options: Any) -> None:
        stats = asyncio.run(self._run())
        self.stdout.write(f"bridge stopped: processed {dict(stats.processed)}, rejected {dict(stats.rejected)}")

    async def _run(self) -> BridgeStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write("bridge running; Ctrl-C stops it")
        stats = BridgeStats()
        await run_bridge_supervised(stop, stats=stats)
        return stats
