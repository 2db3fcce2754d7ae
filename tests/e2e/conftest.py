"""Browser tests: Debian's Chromium driven by Playwright, never a downloaded browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def logged_in_page(page, live_server, admin_user):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page
