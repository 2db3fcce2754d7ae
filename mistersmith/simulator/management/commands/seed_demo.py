"""manage.py seed_demo: fill the database with a realistic demo installation."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.simulator import demo


def positive(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Write a demo supervision tree, agents, sessions, failures, restarts and a hive (one transaction)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--nodes", type=positive, default=200, help="supervision nodes (default 200)")
        parser.add_argument("--levels", type=positive, default=5, help="levels of the tree (default 5)")
        parser.add_argument("--failures", type=positive, default=2000, help="failures (default 2000)")
        parser.add_argument("--days", type=positive, default=7, help="failures spread over this many days")
        parser.add_argument("--sessions", type=positive, default=12, help="interactive sessions (default 12)")
        parser.add_argument("--prefix", default="demo", help="prefix of every node name (default 'demo')")
        parser.add_argument("--seed", type=int, default=0, help="random seed, for repeatable data")
        parser.add_argument("--no-hive", action="store_true", help="leave the Hive Mind files alone")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["nodes"] < 1 or options["levels"] < 1:
            raise CommandError("--nodes and --levels must be at least 1.")
        started = time.perf_counter()
        try:
            counts = demo.seed(
                prefix=options["prefix"],
                nodes=options["nodes"],
                levels=options["levels"],
                failures=options["failures"],
                days=max(options["days"], 1),
                sessions=options["sessions"],
                hive=not options["no_hive"],
                seed_value=options["seed"],
            )
        except demo.DemoExists as error:
            raise CommandError(str(error)) from error
        counts["seconds"] = round(time.perf_counter() - started, 2)
        self.stdout.write(json.dumps(counts))
