"""verify_state wall time (the issue's target: under 2 s).

Two figures: the report made in a warm process (what the admin page and its JSON cost, median of
``runs``), and ``manage.py verify_state --json`` as an operator runs it, a new process each time
(Python and Django start included; median of a few runs, with its CPU time, which a busy
machine does not inflate). Both against the bench database and
the NATS server in use, with the contract's streams present; the bridge's consumers may be
missing (their rows then fail, which costs the same requests as when they pass).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.support import bench_database, percentile, service_env

TARGET = {"median_ms": 2000}
RUNS = 9
COMMAND_RUNS = 3
ROOT = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(runs: int = RUNS) -> Iterator[dict]:
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.operations.verify.report import run as verify

    runs = max(1, runs)
    with bench_database():
        connection().client()  # starts (or joins) NATS and creates any missing contract stream
        url = nats_url()
        verify(nats_url=url)  # warm-up: first connections, imports
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            report = verify(nats_url=url)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        yield {
            "figure": "verify_state_report",
            "runs": runs,
            "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(percentile(times, 0.9), 1),
            "rows": len(report.rows),
            "failed_rows": report.counts["failed"],
            "target": TARGET,
        }
        env = service_env()
        command = [sys.executable, "manage.py", "verify_state", "--json"]
        times, cpu = [], []
        for _ in range(min(runs, COMMAND_RUNS)):
            started, used = time.perf_counter(), _children_cpu()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((_children_cpu() - used) * 1000)
            if done.returncode not in (0, 1):
                raise RuntimeError(f"verify_state exited {done.returncode}: {done.stderr[-2000:]}")
        yield {
            "figure": "verify_state_command",
            "runs": len(times),
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "cpu_ms": round(statistics.median(cpu), 1),  # the process's own CPU: what a busy machine does not inflate
            "target": TARGET,
        }
