"""Services a fault test may stop and start: a NATS server of its own, and the console as a process.

The suite's own services (embedded or the machine's) are shared by every test and never stopped;
a test that takes a service away uses one of these instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from django.db import connection

from mistersmith.embedded import nats_server_binary, postgres_url
from tests.conftest import wait_until

BASE_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PrivateNats:
    """nats-server with JetStream on a port and store of its own; ``stop()`` then ``start()`` again is
    a NATS restart: same port, same store, so streams and durable consumers survive it."""

    def __init__(self, directory: Path, *, max_file_store: str | None = None) -> None:
        self.directory = directory
        self.max_file_store = max_file_store  # e.g. "2MB": a store that fills up (a full disk, as near as it gets)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateNats:
        command = [nats_server_binary(), "--jetstream", "--store_dir", str(self.directory / "jetstream")]
        command += ["--addr", "127.0.0.1", "--port", str(self.port), "--log", str(self.directory / "nats.log")]
        if self.max_file_store:
            config = self.directory / "nats.conf"
            config.write_text(f"jetstream {{ max_file_store: {self.max_file_store} }}\n")
            command += ["--config", str(config)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.port), timeout=20, what=f"nats-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        self.process = None
        wait_until(lambda: not port_open(self.port), timeout=10, what="nats-server to stop")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class ConsoleProcess:
    """The console as ``make run`` serves it (uvicorn, the bridge on its loop) in a process of its own,
    on the test database unless ``env`` says otherwise."""

    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": postgres_url(connection.settings_dict),
            "MISTERSMITH_BRIDGE_IN_PROCESS": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> ConsoleProcess:
        # The server of `manage.py run` (its uvicorn settings and bounded stop), without run's setup.
        command = [sys.executable, "-m", "mistersmith.live.server", "--port", str(self.port), "--log-level", "warning"]
        self.process = subprocess.Popen(command, cwd=BASE_DIR, env=self.env, stdin=subprocess.DEVNULL)
        wait_until(
            lambda: self.process.poll() is not None or answers(f"{self.url}/healthz"), timeout=60, what="the console"
        )
        assert self.process.poll() is None, "the console exited on start"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class PrivatePostgres:
    """A PostgreSQL of this test's own (pgserver, Unix socket in ``directory``): ``stop()`` then
    ``start()`` is a database restart with the data kept."""

    def __init__(self, directory: Path, name: str = "mistersmith") -> None:
        self.directory = directory
        self.name = name
        self.server = None
        self.url = ""

    def start(self) -> PrivatePostgres:
        import warnings

        import psycopg
        from psycopg import sql

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self.server = pgserver.get_server(self.directory, cleanup_mode="stop")
        host = str(self.server.get_postmaster_info().socket_dir)
        with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = postgres_url({"USER": "postgres", "PASSWORD": "", "HOST": host, "NAME": self.name})
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(statement, params).fetchall()


def run_python(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    """Run ``python *args`` in the checkout, in a process of its own with ``env`` added to this
    process's environment; its output, or a clear failure."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"python {' '.join(args)[:200]} failed:\n{result.stdout}\n{result.stderr[-2000:]}"
    return result.stdout


def manage(*args: str, env: dict[str, str]) -> str:
    """Run a manage.py command in a process of its own with ``env``; its output, or a clear failure."""
    return run_python("manage.py", *args, env=env)


class Browser:
    """A logged-in HTTP client (urllib and a cookie jar) for a console process."""

    def __init__(self, base_url: str) -> None:
        import http.cookiejar

        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str, timeout: float = 30) -> tuple[int, str]:
        import urllib.error

        try:
            with self.opener.open(f"{self.base_url}{path}", timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log_in(self, username: str, password: str) -> None:
        import re
        import urllib.parse

        _, form = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"}
        ).encode()
        with self.opener.open(f"{self.base_url}/admin/login/", data=data, timeout=30) as response:
            assert response.url.endswith("/admin/"), f"the login failed: ended at {response.url}"


class RoundRobinProxy:
    """One port in front of several console workers, as a load balancer puts them: the n-th TCP
    connection goes to backend n % len(backends), byte for byte (HTTP and WebSocket alike). Runs on
    the caller's event loop; ``backend_of[i]`` says where the i-th connection went."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_of: list[int] = []
        self.server = None

    async def start(self) -> RoundRobinProxy:
        import asyncio

        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, client_reader, client_writer) -> None:
        import asyncio

        backend = self.backends[len(self.backend_of) % len(self.backends)]
        self.backend_of.append(backend)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            client_writer.close()
            return

        async def pipe(reader, writer) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
