"""The Content-Security-Policy in Chromium: every console page loads, runs its scripts and opens its
WebSocket without one violation (no inline script, style or handler anywhere), and the policy
really blocks what it should (an injected inline script does not run and is reported)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Runs before any page script, in every document: the violations of that document.
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""


@pytest.fixture
def watched_page(browser, asgi_server, admin_user):
    """A logged-in page in a context that applies the CSP (the suite's ``page`` bypasses it), with
    every CSP report and script error of every document it loads."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    context.add_init_script(COLLECT_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    log_in(page, asgi_server.url)
    page.server = asgi_server
    page.problems = problems
    yield page
    context.close()


def visit(page, path: str, *, live: bool = False, ready: str = "#content") -> list[str]:
    """Open a page, wait until it is working, and return its violations (and the page's so far)."""
    response = page.goto(f"{page.server.url}{path}")
    assert response.status == 200, f"{path}: {response.status}"
    assert "default-src 'self'" in response.headers["content-security-policy"], path
    page.wait_for_selector(ready)
    if live:  # the WebSocket is open and the snapshot applied: connect-src allowed both
        expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__cspViolations") + page.problems


def test_every_console_page_runs_without_a_csp_violation(watched_page):
    demo.seed(prefix="csp", nodes=20, failures=40, sessions=2, hive=False)
    node = SupervisionNode.objects.get(node_id="csp-root")
    agent = Agent.objects.first()
    policy = SupervisionPolicy.objects.first()
    failure = SupervisionFailure.objects.first()
    pages = [
        ("/admin/", {}),
        ("/admin/supervision/supervisionfailure/", {"ready": "#result_list"}),  # a changelist with filters
        (f"/admin/supervision/supervisionfailure/{failure.pk}/change/", {}),
        (f"/admin/supervision/supervisionnode/{node.pk}/change/", {"ready": "form"}),
        (
            f"/admin/supervision/supervisionpolicy/{policy.pk}/change/",
            {"ready": "div.policy-backtest[data-state=ready]"},
        ),
        ("/admin/supervision/supervisionnode/add/", {"ready": "form"}),
        ("/admin/auth/user/", {"ready": "#result_list"}),
        (f"/admin/supervision/restart/{node.pk}/", {}),
        (f"/admin/incidents/{failure.pk}/", {"ready": "#incident-timeline"}),
        ("/admin/supervision/tree/", {"live": True, "ready": "#supervision-tree [role=treeitem]"}),
        ("/admin/live/", {"live": True, "ready": "#panel-history .uplot canvas"}),  # uPlot drew under the CSP
        ("/admin/agents/live/", {"live": True}),
        (f"/admin/agents/live/{agent.pk}/", {"live": True}),
        ("/admin/discoveries/", {"live": True}),
        ("/admin/events/", {"live": True}),
    ]
    found = {path: visit(watched_page, path, **options) for path, options in pages}
    assert {path: problems for path, problems in found.items() if problems} == {}


def test_the_login_page_and_an_injected_inline_script(watched_page):
    """The collector works: an inline script added to a page is blocked and reported."""
    watched_page.context.clear_cookies()
    assert visit(watched_page, "/admin/login/", ready="#login-form") == []
    watched_page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__inlineRan = true";
          document.body.append(script);
          const div = document.createElement("div");
          div.setAttribute("onclick", "window.__handlerRan = true");
          document.body.append(div);
          div.click();
        }"""
    )
    watched_page.wait_for_function("window.__cspViolations.length >= 2")
    assert watched_page.evaluate("window.__inlineRan") is None
    assert watched_page.evaluate("window.__handlerRan") is None
    assert all("script-src" in violation for violation in watched_page.evaluate("window.__cspViolations"))
