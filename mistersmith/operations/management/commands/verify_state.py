"""manage.py verify_state: the state verification matrix as a table (or JSON).

Exit status 1 when any check failed; degraded checks alone exit 0 (they are worth a look, not a
page at night). ``--url`` also opens a real WebSocket to a running console.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.operations.verify.matrix import DEGRADED, FAILED, Report, Row
from mistersmith.operations.verify.report import run

COLUMNS = ("component", "check", "expected", "found", "status", "hint")
WIDTH = {"component": 15, "check": 30, "expected": 44, "found": 48, "status": 8}  # the hint takes the rest


def _cell(text: str, width: int, *, cut: bool) -> str:
    if cut and len(text) > width:
        return text[: width - 1] + "…"
    return text.ljust(width)


class Command(BaseCommand):
    help = "Check the eight stateful components (the state verification matrix); exit 1 if any check failed."
    requires_system_checks: list[str] = []  # a probe: no system checks before it (they cost more than it)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--url", help="base URL of a running console: open its live WebSocket for real")

    def handle(self, *args: Any, **options: Any) -> None:
        report = run(base_url=options["url"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._table(report)
        failed = report.counts[FAILED]
        if failed:
            raise CommandError(f"{failed} of {len(report.rows)} checks failed.", returncode=1)

    def _table(self, report: Report) -> None:
        header = "  ".join(_cell(name.upper(), WIDTH[name], cut=False) for name in COLUMNS[:-1]) + "  HINT"
        self.stdout.write(header.rstrip())
        for row in report.rows:
            self.stdout.write(self._line(row).rstrip())
        counts = report.counts
        self.stdout.write(
            f"\n{counts['ok']} ok, {counts[DEGRADED]} degraded, {counts[FAILED]} failed "
            f"in {report.duration_ms:.0f} ms ({report.checked_at:%Y-%m-%d %H:%M:%S %Z})"
        )

    def _line(self, row: Row) -> str:
        cells = [
            _cell(row.component, WIDTH["component"], cut=False),
            _cell(row.check, WIDTH["check"], cut=False),
            _cell(row.expected, WIDTH["expected"], cut=True),  # the contract's words; --json has them whole
            _cell(row.found, WIDTH["found"], cut=False),
        ]
        style = {FAILED: self.style.ERROR, DEGRADED: self.style.WARNING}.get(row.status, self.style.SUCCESS)
        return "  ".join([*cells, style(row.status.ljust(WIDTH["status"])), row.hint])
