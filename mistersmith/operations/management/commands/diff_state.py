"""manage.py diff_state A [B]: what changed from snapshot A to snapshot B, or to now (docs/snapshots.md).

Prints the nodes added, removed and changed (the first 20 of each) and the rows per table;
``--json`` prints the whole diff instead. Reads only: nothing is changed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.operations.snapshots.api import SnapshotError, locate
from mistersmith.operations.snapshots.diff import diff_snapshots


class Command(BaseCommand):
    help = "Compare two snapshots, or a snapshot with the database now: nodes added, removed, changed; rows per table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("before", help="the earlier snapshot: a file, or its name in the snapshot directory")
        parser.add_argument("after", nargs="?", help="the later snapshot (default: the database now)")
        parser.add_argument("--json", action="store_true", help="print the whole diff as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            before = locate(options["before"])
            after = locate(options["after"]) if options["after"] and options["after"] != "now" else None
            diff = diff_snapshots(before, after)
        except SnapshotError as error:
            raise CommandError(str(error)) from error
        if options["json"]:
            self.stdout.write(json.dumps(diff.as_json(), indent=2))
            return
        for line in diff.lines():
            self.stdout.write(line)
