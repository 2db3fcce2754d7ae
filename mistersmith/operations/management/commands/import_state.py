"""manage.py import_state <archive>: restore a snapshot (docs/snapshots.md).

Into an empty installation as it is; into one that holds state only with --replace, after a
confirmation (--yes / --no-input skip it). Checksums are verified before anything is touched;
--dry-run prints the plan and changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.operations.snapshots.api import ImportOptions, SnapshotError, execute, locate, plan_import
from mistersmith.operations.snapshots.progress import Progress


class Command(BaseCommand):
    help = "Restore a snapshot written by export_state (a path, or a name in the snapshot directory)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", help="the snapshot file, or its name in the snapshot directory")
        parser.add_argument("--replace", action="store_true", help="replace the state of an installation that has one")
        parser.add_argument(
            "--yes",
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="do not ask for confirmation",
        )
        parser.add_argument("--dry-run", action="store_true", help="verify and print what would happen; change nothing")
        parser.add_argument(
            "--streams", action="store_true", help="republish the snapshot's stream messages (see docs/snapshots.md)"
        )
        parser.add_argument("--no-hive", action="store_true", help="leave the Hive Mind files as they are")
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path = locate(options["archive"])
            import_options = ImportOptions(
                replace=options["replace"],
                streams=options["streams"],
                hive=not options["no_hive"],
                progress=Progress(False if options["quiet"] else None),
            )
            plan = plan_import(path, import_options)
            if options["dry_run"] or plan.refusal:
                for line in plan.lines():
                    self.stdout.write(line)
            if plan.refusal:
                raise CommandError(plan.refusal)
            if options["dry_run"]:
                self.stdout.write("Dry run: nothing was changed.")
                return
            if plan.not_empty and options["interactive"] and not self._confirmed(plan.lines()):
                raise CommandError("Restore cancelled; nothing was changed.")
            result = execute(plan)
        except SnapshotError as error:
            raise CommandError(str(error)) from error
        for line in result.lines():
            self.stdout.write(line)
        self.stdout.write("If the bridge is running, restart it: it continues from the restored positions.")

    def _confirmed(self, lines: list[str]) -> bool:
        for line in lines:
            self.stdout.write(line)
        answer = input("The state above will be REPLACED by the snapshot. Type 'yes' to continue: ")
        return answer.strip().lower() == "yes"
