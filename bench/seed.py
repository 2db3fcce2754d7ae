"""`manage.py seed_demo --failures 1000000` wall time, into an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

from mistersmith.embedded import postgres_url

ROOT = Path(__file__).resolve().parent.parent


def run() -> Iterator[dict]:
    settings_dict = connection.settings_dict
    original_name = settings_dict["NAME"]
    settings_dict.setdefault("TEST", {})["NAME"] = f"{settings_dict['NAME']}_bench_seed"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    connection.close()
    try:
        env = {**os.environ, "DATABASE_URL": postgres_url({**settings_dict, "NAME": name})}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--no-hive", "--nodes", "10000", "--failures", "1000000"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"seed_demo failed:\n{result.stderr[-3000:]}")
        seconds = time.perf_counter() - started
        yield {
            "figure": "seed_demo_1m_failures",
            "wall_s": round(seconds, 1),
            "output": result.stdout.strip().splitlines()[-1],
            "target": {"wall_s": 60},
        }
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
