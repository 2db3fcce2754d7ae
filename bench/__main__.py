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
    "changelist_ratio",
    "seed",
    "cold_start",
    "restarts",
    "tree",
    "budgets",
    "backtest",
    "incident",
    "past_tree",
    "dashboard",
    "bridge",
    "live_latency",
    "bridge_memory",
    "rebuild",
    "catchup",
    "prune",
    "metrics",
    "snapshots",
    "snapshot_diff",
    "verify_state",
    "load_sockets",
    "load_admin",
    "socket_lifecycle",
    "failover",
]
# Load tests: minutes of the whole machine each; load_sockets, socket_lifecycle and failover need
# REDIS_URL; run when named.
ON_REQUEST = {"load_sockets", "load_admin", "socket_lifecycle", "failover"}
OPTIONS = {"bridge_memory": ["events"]}  # benchmark -> the options below that its run() takes
OPTIONS.update(rebuild=["events"], catchup=["events"], prune=["failures"])
OPTIONS.update(metrics=["failures"])
OPTIONS.update(snapshots=["failures"])
OPTIONS.update(verify_state=["runs"])
OPTIONS.update(load_sockets=["sockets", "seconds", "rate", "workers"])
OPTIONS.update(load_admin=["users", "seconds", "workers", "think"])
OPTIONS.update(socket_lifecycle=["sockets", "rate", "cycles"])
OPTIONS.update(failover=["kills", "rate"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument(
        "names",
        nargs="*",
        default=[name for name in BENCHMARKS if name not in ON_REQUEST],
        help=f"which benchmarks ({', '.join(BENCHMARKS)}; all but {', '.join(sorted(ON_REQUEST))} when none named)",
    )
    parser.add_argument(
        "--events",
        type=int,
        help="bridge_memory, catchup, rebuild: agent events to publish (defaults 1,000,000, 1,000,000, 100,000)",
    )
    parser.add_argument(
        "--failures",
        type=int,
        help="prune: old failures to write and prune; metrics: failures held; "
        "snapshots: failures exported and imported (default 1,000,000 each)",
    )
    parser.add_argument("--runs", type=int, help="verify_state: reports timed (default 9; the command 3 at most)")
    parser.add_argument("--sockets", type=int, help="load_sockets: WebSockets held (default 500)")
    parser.add_argument("--seconds", type=int, help="load_sockets: seconds of events; load_admin: of browsing (60)")
    parser.add_argument(
        "--rate", type=int, help="load_sockets, socket_lifecycle, failover: agent events published per second"
    )
    parser.add_argument("--workers", type=int, help="load_sockets, load_admin: console worker processes (default 2)")
    parser.add_argument("--cycles", type=int, help="socket_lifecycle: sockets opened and closed (default 1,000)")
    parser.add_argument("--users", type=int, help="load_admin: concurrent logged-in admin users (default 200)")
    parser.add_argument("--kills", type=int, help="failover: leading bridges SIGKILLed mid-stream (default 10)")
    parser.add_argument("--think", type=float, help="load_admin: mean seconds between two pages of a user (5)")
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
