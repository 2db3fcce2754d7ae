"""manage.py prune: delete state older than its retention, in small batches (or count it with --dry-run).

Retention per state type comes from MISTERSMITH_RETENTION_<TYPE>_DAYS; see
mistersmith.operations.retention and docs/state.md. Meant for a daily timer (cron, systemd).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.operations.retention import DEFAULT_BATCH, KINDS, PruneResult, prune, retention_days


class Command(BaseCommand):
    help = "Delete failures, restarts, events, closed sessions and dead letters older than their retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
        parser.add_argument("--only", action="append", choices=KINDS, help="only this state type (repeatable)")
        parser.add_argument(
            "--batch", type=int, default=DEFAULT_BATCH, help=f"rows per transaction (default {DEFAULT_BATCH:,})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        days = retention_days()

        def progress(result: PruneResult) -> None:
            if result.batches % 20 == 0:
                self.stderr.write(f"{result.table}: {result.deleted:,} deleted in {result.batches} batches")

        try:
            results = prune(only=options["only"], dry_run=dry_run, batch_size=options["batch"], progress=progress)
        except ValueError as error:
            raise CommandError(str(error)) from error
        verb = "would delete" if dry_run else "deleted"
        for result in results:
            if result.notes:
                self.stdout.write(f"{result.kind:<12} {result.table}: {'; '.join(result.notes)}")
                continue
            line = (
                f"{result.kind:<12} {result.table}: {verb} {result.deleted:,} rows older than "
                f"{days[result.kind]} days ({result.cutoff:%Y-%m-%d %H:%M} UTC)"
            )
            if result.children:
                line += f", with {result.children:,} messages"
            if result.kept_back:
                line += f"; {result.kept_back:,} kept back (a kept restart refers to them)"
            if not dry_run:
                line += f" in {result.batches} batches"
            self.stdout.write(line)
