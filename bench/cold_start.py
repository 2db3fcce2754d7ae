"""Cold start of `make run` on an installed .venv: from the command to the login page answering.

The data directory exists (a second start, as a user's every start after the first), but no
service is running. Target (issue 2): under 5 s.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_and_time(var_dir: str) -> float:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "NATS_URL", "REDIS_URL")}
    env.update(MISTERSMITH_VAR_DIR=var_dir, PORT=str(port), MISTERSMITH_NATS_PORT=str(free_port()))
    started = time.perf_counter()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not answers(f"http://127.0.0.1:{port}/admin/login/"):
            if process.poll() is not None:
                raise RuntimeError("make run exited before answering")
            if time.perf_counter() - started > 120:
                raise RuntimeError("make run did not answer within 120 s")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)


def run() -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="mistersmith-bench-") as var_dir:
        first = start_and_time(var_dir)  # creates the data directory, the schema, the demo
        times = [start_and_time(var_dir) for _ in range(RUNS)]
    yield {
        "figure": "make_run_cold_start",
        "first_start_s": round(first, 2),
        "median_s": round(statistics.median(times), 2),
        "max_s": round(max(times), 2),
        "runs": RUNS,
        "target": {"median_s": 5},
    }
