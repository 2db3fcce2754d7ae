"""`make run`'s command end to end: services, migrations, admin login, the page, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import pytest
from psycopg import sql

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run exited early:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def login_page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200 and b"MisterSmith" in response.read()
    except OSError:
        return False


@pytest.fixture
def run_database_url():
    """With DATABASE_URL set (a shared server), `run` gets a database of its own, dropped after."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        yield None
        return
    name = f"mistersmith_run_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(base, dbname="postgres", autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_serves_the_login_and_a_stop_signal_stops_what_it_started(tmp_path, run_database_url, stop_signal):
    """Ctrl-C, and SIGTERM as `docker stop` or systemd send it: the embedded services stop too."""
    port = free_port()
    env = {
        **os.environ,
        "MISTERSMITH_VAR_DIR": str(tmp_path / "var"),
        "MISTERSMITH_NATS_PORT": str(free_port()),
        "PORT": str(port),
        "DJANGO_SUPERUSER_PASSWORD": "run-test-pass-1",
        "PYTHONUNBUFFERED": "1",
    }
    if run_database_url:
        env["DATABASE_URL"] = run_database_url
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: login_page_answers(f"http://127.0.0.1:{port}/admin/login/"), 120, process)
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/admin/" in output
    assert "admin / run-test-pass-1" in output
    started_here = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert started_here == [], f"embedded services outlived {stop_signal.name}"
