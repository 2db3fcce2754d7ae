"""`make bench`: every benchmark in bench/, one JSON line per figure on stdout.

Figures, not pass/fail: each line names the figure, its value, its unit and, where the issue set
one, the target. Benchmarks run against a database of their own (``<name>_bench``), kept between
runs so that the million-row data set is written once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BENCHMARKS = [
    "changelist",
    "seed",
    "cold_start",
    "restarts",
    "tree",
    "dashboard",
    "bridge",
    "live_latency",
    "bridge_memory",
]
OPTIONS = {"bridge_memory": ["events"]}  # benchmark -> the options below that its run() takes


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("names", nargs="*", default=BENCHMARKS, help=f"which benchmarks ({', '.join(BENCHMARKS)})")
    parser.add_argument("--events", type=int, help="bridge_memory: agent events to publish (default 1,000,000)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mistersmith.settings")
    import django

    django.setup()
    from importlib import import_module

    for name in args.names:
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        options = {key: getattr(args, key) for key in OPTIONS.get(name, []) if getattr(args, key) is not None}
        for figure in import_module(f"bench.{name}").run(**options):
            print(json.dumps({"bench": name, **figure}), flush=True)


if __name__ == "__main__":
    main()
