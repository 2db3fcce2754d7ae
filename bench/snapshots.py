"""Snapshots: `manage.py export_state` and `manage.py import_state --replace` of an installation
with ``--failures`` failures (default 1,000,000; the demo writes about 0.7 restarts per failure
too), each in a process of its own: wall time and peak RSS (the child's ru_maxrss from wait4).

Targets (issue 5): under 60 s and under 300 MB each at 1,000,000 failures.
The data set lives in a database of its own (``<name>_bench_snapshots_<failures>``), kept between
runs. The Hive Mind files are left out (--no-hive): they are the installation's real files and
small; the streams too (their export is capped and measured by nothing here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from django.db import connection

from bench.support import bench_database, machine, service_env

ROOT = Path(__file__).resolve().parent.parent
FAILURES = 1_000_000
TARGET = {"wall_s": 60, "peak_rss_mb": 300}


def snapshot_database(failures: int) -> AbstractContextManager[str]:
    """A database of its own per scale (the export and import replace its content)."""
    return bench_database(f"bench_snapshots_{failures}")


def ensure_data(failures: int) -> None:
    from mistersmith.simulator import demo
    from supervision.models import SupervisionNode

    if not SupervisionNode.objects.filter(node_id="snap-root").exists():
        demo.seed(prefix="snap", nodes=min(10_000, max(100, failures // 100)), failures=failures, hive=False)


def timed(arguments: list[str], log: Path) -> tuple[float, float]:
    """Run a manage.py command; (wall seconds, peak RSS in MB) of that one process."""
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=service_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"manage.py {arguments[0]} failed:\n{log.read_text()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # kilobytes on Linux


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM supervision_failures), (SELECT count(*) FROM supervision_restarts)"
        )
        failures, restarts = cursor.fetchone()
    return {"failures": failures, "restarts": restarts}


def run(failures: int = FAILURES) -> Iterator[dict]:
    with snapshot_database(failures), tempfile.TemporaryDirectory(prefix="bench-snapshots-") as folder:
        ensure_data(failures)
        before = counts()
        connection.close()  # the import takes every table: hold no connection that could block it
        archive = Path(folder) / "bench.tar"
        export_s, export_rss = timed(
            ["export_state", "--output", str(archive), "--no-hive", "--quiet"], Path(folder) / "export.log"
        )
        import_s, import_rss = timed(
            ["import_state", str(archive), "--replace", "--yes", "--no-hive", "--quiet"], Path(folder) / "import.log"
        )
        after = counts()
        if after != before:
            raise RuntimeError(f"the import changed the data: {before} before, {after} after")
        common = {"rows": before, "archive_mb": round(archive.stat().st_size / 1024 / 1024, 1), "machine": machine()}
        yield {
            "figure": "export_state",
            "wall_s": round(export_s, 1),
            "peak_rss_mb": round(export_rss),
            **common,
            "target": TARGET,
        }
        yield {
            "figure": "import_state",
            "wall_s": round(import_s, 1),
            "peak_rss_mb": round(import_rss),
            **common,
            "target": TARGET,
        }
