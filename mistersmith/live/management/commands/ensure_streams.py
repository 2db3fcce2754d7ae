"""manage.py ensure_streams: the four JetStream streams of the contract, created when missing.

An existing stream with other settings is never changed silently: the differences are printed
and the command exits non-zero, unless --update says to apply the contract's settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.jetstream.client import nats_url
from mistersmith.jetstream.client import servers as nats_servers
from mistersmith.jetstream.streams import StreamReport, ensure_streams


class Command(BaseCommand):
    help = "Create the contract's JetStream streams when missing; report streams whose settings differ."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--update", action="store_true", help="apply the contract's settings to differing streams")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            reports = asyncio.run(self._ensure(options["update"]))
        except (OSError, nats.errors.Error) as error:
            raise CommandError(f"NATS at {nats_url()} is unavailable: {error}") from error
        for report in reports:
            self.stdout.write(f"{report.name}: {report.action}")
            for setting, (wanted, found) in report.differences.items():
                self.stdout.write(f"  {setting}: contract {wanted!r}, stream {found!r}")
        differing = [r.name for r in reports if r.action == "differs"]
        if differing:
            raise CommandError(
                f"{', '.join(differing)} differ from the contract; nothing was changed. Run with --update to apply it."
            )

    async def _ensure(self, update: bool) -> list[StreamReport]:
        client = await nats.connect(nats_servers(nats_url()), connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await ensure_streams(client.jetstream(), update=update)
        finally:
            await client.close()
