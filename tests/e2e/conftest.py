"""Browser tests: Debian's Chromium driven by Playwright, never a downloaded browser."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from mistersmith.live.bridge import consumers_exist as bridge_consumers_exist
from tests.conftest import delete_bridge_consumers, wait_until

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    return path if Path(path).exists() else None


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module: Playwright's sync API keeps an event loop running in this
    thread while it lives, which would stop pytest-asyncio tests elsewhere from running."""
    path = chromium_path()
    if path is None:
        message = "Chromium is not installed (apt-get install -y chromium, or set CHROMIUM_PATH)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: browser tests must run in CI.")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # While Playwright's loop runs, the tests' own ORM calls (fixtures, database teardown) are
    # still plain synchronous calls: tell Django so for as long as the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    """A fresh browser context that does not apply the console's Content-Security-Policy:
    Playwright's wait_for_function compiles its predicate inside the page, which script-src
    'self' (no 'unsafe-eval') forbids; and a test that shows hostile text must prove the page's
    own escaping, not lean on the CSP as a safety net. tests/e2e/test_csp.py checks the policy
    itself on every console page, in a context that applies it."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, base_url: str) -> None:
    """Through the admin's login form, as the superuser of the ``admin_user`` fixture."""
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


@pytest.fixture
def logged_in_page(page, live_server, admin_user):
    log_in(page, live_server.url)
    return page


class AsgiServer:
    """The console's real ASGI application (HTTP and WebSockets) under uvicorn on a thread, with
    the bridge on its loop, as ``make run`` serves it. ``stop()`` and ``start()`` again on the
    same port are how a test takes the server away from a page and brings it back."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.thread = None

    def start(self) -> None:
        import uvicorn

        from mistersmith.asgi import application

        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            ws_per_message_deflate=False,  # as manage.py run serves it
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="asgi-test-server", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20, what="the ASGI server to start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(20)
            assert not self.thread.is_alive(), "the ASGI server did not stop"
            self.server = None


@pytest.fixture
def asgi_server(transactional_db, monkeypatch):
    """A running console (ASGI + in-process bridge with consumers of its own) on the test database.

    It is ready when the bridge's durable consumers exist: an event published after that reaches it.
    """
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MISTERSMITH_BRIDGE_IN_PROCESS", "1")
    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", prefix)
    server = AsgiServer()
    server.start()
    wait_until(lambda: bridge_consumers_exist(prefix), timeout=20, what="the bridge's consumers")
    server.consumer_prefix = prefix
    yield server
    server.stop()
    delete_bridge_consumers(prefix)


@pytest.fixture
def live_page(page, asgi_server, admin_user):
    """A browser page logged in as a superuser on the ASGI server (so WebSockets work)."""
    log_in(page, asgi_server.url)
    page.server = asgi_server
    return page


def docs_screenshot(target, name: str) -> None:
    """With DOCS_SCREENSHOTS=1, save ``target`` (a page or a locator) as docs/img/<name>.png for the
    docs; otherwise nothing (a test run leaves the checkout as it was)."""
    if os.environ.get("DOCS_SCREENSHOTS") != "1":
        return
    folder = Path(__file__).resolve().parents[2] / "docs" / "img"
    folder.mkdir(exist_ok=True)
    page = getattr(target, "page", target)
    page.set_viewport_size({"width": 1600, "height": 1000})  # wide tables whole, not cut by their scroll box
    target.screenshot(path=str(folder / f"{name}.png"))
