"""manage.py rebuild_projections: agent state, heartbeats, session output, anomalies and the
discovery store, rebuilt from the streams' retained history with the bridge's own code.

Progress goes to stderr, the summary to stdout. See mistersmith.operations.rebuild and docs/state.md.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.operations.rebuild import FEEDS, RebuildRefused, rebuild_projections

PROGRESS_EVERY_SECONDS = 1.0


def agent_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an agent id (a UUID)") from None


class Command(BaseCommand):
    help = "Rebuild the console's projections (agents, sessions' output, discoveries) from the streams' history."

    def add_arguments(self, parser: CommandParser) -> None:
        start = parser.add_mutually_exclusive_group(required=True)
        start.add_argument(
            "--from-scratch", action="store_true", help="replay everything the streams retain; empty the store first"
        )
        start.add_argument("--from-sequence", type=int, metavar="N", help="replay AGENT_EVENTS from stream sequence N")
        parser.add_argument(
            "--agent", action="append", type=agent_id, metavar="UUID", help="only this agent (repeatable)"
        )
        parser.add_argument("--only", choices=FEEDS, help="only the agents or only the discoveries projection")
        parser.add_argument("--consumer-prefix", help="the bridge's consumer prefix (MISTERSMITH_BRIDGE_PREFIX)")
        parser.add_argument("--batch", type=int, default=500, help="messages per read (default 500)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be 1 or more.")
        last_shown = [0.0]

        def progress(feed: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last_shown[0] >= PROGRESS_EVERY_SECONDS or done >= total:
                last_shown[0] = now
                share = f" ({100 * done // total}%)" if total else ""
                self.stderr.write(f"{feed}: {done:,} of {total:,} messages{share}")

        try:
            report = rebuild_projections(
                from_scratch=options["from_scratch"],
                from_sequence=options["from_sequence"],
                agents=options["agent"],
                only=[options["only"]] if options["only"] else FEEDS,
                consumer_prefix=options["consumer_prefix"],
                batch_size=options["batch"],
                progress=progress,
            )
        except (RebuildRefused, ValueError, NatsUnavailable) as error:
            raise CommandError(str(error)) from error
        for feed in report.feeds:
            outcome = ", ".join(f"{key} {value:,}" for key, value in sorted(feed.outcome.items()) if value)
            line = f"{feed.stream} #{feed.start}..#{feed.end}: {feed.messages:,} messages"
            self.stdout.write(f"{line}; {outcome}" if outcome else line)
            if feed.rejected:
                self.stdout.write("  refused: " + ", ".join(f"{k} {v:,}" for k, v in sorted(feed.rejected.items())))
            for note in feed.notes:
                self.stdout.write(f"  note: {note}")
        if report.position is not None:
            self.stdout.write(f"bridge position (agents): #{report.position}")
        self.stdout.write(f"done in {report.seconds:.1f} s")
