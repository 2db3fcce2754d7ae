"""200 concurrent logged-in admin users browsing the console, with locust on loopback.

The console runs as docs/deploy.md serves it on one machine: ``uvicorn --workers 2`` (no bridge:
pages read PostgreSQL; the bridge is a service of its own) on the bench database with the
changelist benchmark's data set (10,000 supervision nodes, 1,000,000 failures, their agents;
seeded once and kept). ``USERS`` superusers are created for the run and removed after it.

locust (headless, a process of its own: gevent) runs bench/admin_users.py: each user logs in
through the login form, and once all are in, they browse for ``SECONDS`` s with a think time of
``THINK`` s on average: the admin index, the changelists of supervision nodes, failures (plus a
filtered one) and agents, the tree page, the dashboard snapshot JSON and the agents live list
JSON. Figures: requests/s, error rate (target: zero), p50/p95/p99/max per page and overall
(targets, issue 14: p99 under 2 s, at most 35 ms of the workers' CPU per page), the
logins apart (a password hash each: Django's PBKDF2, deliberately slow), and the CPU and load
average of the machine, which the workers, PostgreSQL and locust share. locust rounds response
times above 100 ms to two significant digits.

django-axes counts failed logins only, per username and address (settings.AXES_*): 200
successful logins from 127.0.0.1 lock nobody out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from bench.changelist import FAILURES, ensure_failures
from bench.live_latency import cpu_seconds, machine_pct, start_server, stop_server
from bench.support import bench_database, free_port, machine

ROOT = Path(__file__).resolve().parent.parent
USERS = 200
SECONDS = 60
WORKERS = 2
THINK = 5.0  # mean seconds between two pages of one user (uniform over half to one and a half times it)
SPAWN_PER_S = 20  # users starting per second (each logs in first)
LOGIN_ALLOWANCE_S = 600  # locust's hard stop: logins plus browsing plus this


def create_users(prefix: str, count: int, password: str) -> list[int]:
    """``count`` superusers sharing one password hash (hashing it 200 times would take minutes)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    hashed = make_password(password)
    model = get_user_model()
    users = model.objects.bulk_create(
        model(username=f"{prefix}-{i}", password=hashed, is_staff=True, is_superuser=True) for i in range(count)
    )
    return [user.pk for user in users]


def delete_users(prefix: str, ids: list[int], since) -> None:
    """The run's users, their sessions and django-axes' records of their logins."""
    from axes.models import AccessAttempt, AccessLog
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    wanted = {str(pk) for pk in ids}
    for session in Session.objects.filter(expire_date__gte=since).iterator():
        if session.get_decoded().get("_auth_user_id") in wanted:
            session.delete()
    AccessLog.objects.filter(username__startswith=f"{prefix}-").delete()
    AccessAttempt.objects.filter(username__startswith=f"{prefix}-").delete()
    get_user_model().objects.filter(pk__in=ids).delete()


def process_tree(pid: int) -> list:
    import psutil

    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def tree_cpu(processes: list) -> float:
    import psutil

    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_locust(url: str, prefix: str, password: str, users: int, seconds: int, think: float, server_pid: int) -> dict:
    """locust headless against ``url``; its result file, plus CPU and load figures of the browsing window."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="load-admin-") as directory:
        result = Path(directory) / "result.json"
        command = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "admin_users.py"), "--headless"]
        command += ["--host", url, "--users", str(users), "--spawn-rate", str(SPAWN_PER_S)]
        command += ["--run-time", f"{seconds + LOGIN_ALLOWANCE_S}s", "--only-summary", "--loglevel", "WARNING"]
        env = {
            **os.environ,
            "LOAD_ADMIN_USER_PREFIX": prefix,
            "LOAD_ADMIN_PASSWORD": password,
            "LOAD_ADMIN_SECONDS": str(seconds),
            "LOAD_ADMIN_THINK": str(think),
            "LOAD_ADMIN_RESULT": str(result),
        }
        log = Path(directory) / "locust.log"
        started = time.monotonic()
        with log.open("w") as output:
            locust = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        marker = Path(f"{result}.started")
        while locust.poll() is None and not marker.exists():
            time.sleep(0.2)
        logins_s = time.monotonic() - started
        servers = process_tree(server_pid)
        client = psutil.Process(locust.pid)
        before = tree_cpu(servers), client.cpu_times(), psutil.cpu_times(), time.monotonic()
        load_before = round(psutil.getloadavg()[0], 1)
        client_after = client.cpu_times()  # the last reading before it exits
        while locust.poll() is None:
            client_after = client.cpu_times()
            time.sleep(0.5)
        window = time.monotonic() - before[3]
        if not result.exists():
            raise RuntimeError(f"locust wrote no result (exit {locust.returncode}):\n{log.read_text()[-3000:]}")
        figures = json.loads(result.read_text())
        if not figures.get("complete"):
            raise RuntimeError(f"not every user logged in: {figures}\n{log.read_text()[-3000:]}")
    figures["logins_s"] = round(logins_s, 1)
    server_seconds = tree_cpu(servers) - before[0]
    figures["cpu"] = {
        "server_cpu_pct": round(100 * server_seconds / window),  # 100 = one core
        # the workers' CPU per page answered in the window (issue 14: at most 35 ms)
        "server_cpu_ms_per_page": round(1000 * server_seconds / max(1, figures["overall"]["requests"]), 1),
        "locust_cpu_pct": round(100 * cpu_seconds(before[1], client_after) / window),
        "machine_cpu_pct": machine_pct(before[2], psutil.cpu_times()),
        "load_before": load_before,
        "load_after": round(psutil.getloadavg()[0], 1),
    }
    return figures


def run(users: int = USERS, seconds: int = SECONDS, workers: int = WORKERS, think: float = THINK) -> Iterator[dict]:
    import psutil
    from django.conf import settings
    from django.utils import timezone

    load_at_start = round(psutil.getloadavg()[0], 1)  # the later readings include this run's own threads
    with bench_database():
        ensure_failures(FAILURES)
        prefix, password = f"bench-load-admin-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        since = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE) - timedelta(minutes=5)
        ids = create_users(prefix, users, password)
        port = free_port()
        server = None
        try:
            server = start_server(port, None, workers=workers, LOG_LEVEL="WARNING")  # no line per login
            figures = run_locust(f"http://127.0.0.1:{port}", prefix, password, users, seconds, think, server.pid)
        finally:
            if server is not None:
                stop_server(server)
            delete_users(prefix, ids, since)
        overall = figures["overall"]
        common = {"users": users, "seconds": figures["seconds"], "workers": workers, "think_s": think}
        yield {
            "figure": "load_admin",
            **overall,
            "error_rate": round(overall["failures"] / max(1, overall["requests"]), 4),
            **common,
            "logged_in": figures["logged_in"],
            "login_failures": figures["login_failures"],
            "login_retries": figures.get("login_retries", 0),
            "logins_s": figures["logins_s"],
            "load_at_start": load_at_start,
            **figures["cpu"],
            "errors": figures["errors"],
            "machine": f"{machine()}: uvicorn --workers {workers}, PostgreSQL, NATS and locust share them",
            "target": {"error_rate": 0, "p99_ms": 2000, "server_cpu_ms_per_page": 35},
        }
        for name, page in sorted(figures["pages"].items()):
            yield {"figure": "load_admin_page", "page": name, **page, **common}
        for name, login in sorted(figures["logins"].items()):
            yield {"figure": "load_admin_login", "step": name, **login, "users": users}
