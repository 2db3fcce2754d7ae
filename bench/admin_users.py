"""The locustfile of bench/load_admin.py: admin users who log in through the form, then browse.

Run by load_admin in a locust process of its own (gevent patches the standard library: nothing of
Django is imported here). Settings come from the environment load_admin sets:
LOAD_ADMIN_USER_PREFIX (users ``<prefix>-0`` .. ``<prefix>-N-1`` exist, superusers),
LOAD_ADMIN_PASSWORD, LOAD_ADMIN_SECONDS (browsing time), LOAD_ADMIN_THINK (mean seconds between
two pages of one user), LOAD_ADMIN_RESULT (a JSON file written at the end).

Each user logs in through the login form (CSRF token and all), then waits until every user has:
the measured window starts with all of them logged in and lasts LOAD_ADMIN_SECONDS. The logins'
own figures are kept apart (a login is a deliberately slow password hash). A page counts as an
error unless it answers 200 itself: a redirect to the login page would be a lost session.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from urllib.parse import urlencode

import gevent
from gevent.event import Event
from locust import FastHttpUser, between, events, task
from locust.stats import calculate_response_time_percentile

PREFIX = os.environ.get("LOAD_ADMIN_USER_PREFIX", "bench-load-admin")
PASSWORD = os.environ.get("LOAD_ADMIN_PASSWORD", "")
SECONDS = float(os.environ.get("LOAD_ADMIN_SECONDS", 60))
THINK = float(os.environ.get("LOAD_ADMIN_THINK", 2))
RESULT = os.environ.get("LOAD_ADMIN_RESULT", "load_admin.json")
LOGIN_NAMES = ("login form", "login")
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

numbers = itertools.count()
everyone_in = Event()
state = {"logged_in": 0, "login_failures": 0, "login_retries": 0, "started": None, "login": {}}
LOGIN_ATTEMPTS = 3


def summary(entry, count: int, response_times: dict, seconds: float | None) -> dict:
    """Figures of one locust stats entry (or of several merged): counts, rate, percentiles in ms."""
    figures = {
        "requests": count,
        "failures": entry["failures"],
        "p50_ms": calculate_response_time_percentile(response_times, count, 0.50),
        "p95_ms": calculate_response_time_percentile(response_times, count, 0.95),
        "p99_ms": calculate_response_time_percentile(response_times, count, 0.99),
        "max_ms": round(entry["max"]),
    }
    if seconds:
        figures["requests_per_s"] = round(count / seconds, 1)
    return figures


def entry_summary(entry, seconds: float | None = None) -> dict:
    facts = {"failures": entry.num_failures, "max": entry.max_response_time or 0}
    return summary(facts, entry.num_requests, entry.response_times, seconds)


def start_browsing(environment) -> None:
    """Every user is in: keep the logins' figures, start the measured window, end it in SECONDS."""
    stats = environment.runner.stats
    state["login"] = {name: entry_summary(entry) for (name, _), entry in stats.entries.items()}
    stats.reset_all()
    state["started"] = time.monotonic()
    with open(f"{RESULT}.started", "w") as marker:  # load_admin starts its CPU figures now
        marker.write(str(time.time()))
    everyone_in.set()
    gevent.spawn_later(SECONDS, environment.runner.quit)


@events.test_stop.add_listener
def write_result(environment, **_kwargs) -> None:
    if state["started"] is None:  # stopped before every user had logged in
        result = {"complete": False, "logged_in": state["logged_in"], "login_failures": state["login_failures"]}
    else:
        seconds = time.monotonic() - state["started"]
        stats = environment.runner.stats
        pages = {
            name: entry_summary(entry, seconds)
            for (name, _), entry in stats.entries.items()
            if entry.num_requests or entry.num_failures  # the logins' entries, emptied at the start
        }
        merged: dict[int, int] = {}
        for entry in stats.entries.values():
            for response_time, count in entry.response_times.items():
                merged[response_time] = merged.get(response_time, 0) + count
        overall_facts = {
            "failures": sum(entry.num_failures for entry in stats.entries.values()),
            "max": max((entry.max_response_time or 0 for entry in stats.entries.values()), default=0),
        }
        count = sum(entry.num_requests for entry in stats.entries.values())
        result = {
            "complete": True,
            "seconds": round(seconds, 1),
            "logged_in": state["logged_in"],
            "login_failures": state["login_failures"],
            "login_retries": state["login_retries"],
            "overall": summary(overall_facts, count, merged, seconds),
            "pages": pages,
            "logins": state["login"],
            "errors": [
                {"name": error.name, "error": str(error.error)[:200], "count": error.occurrences}
                for error in stats.errors.values()
            ][:10],
        }
    with open(RESULT, "w") as file:
        json.dump(result, file)


class AdminUser(FastHttpUser):
    wait_time = between(THINK / 2, THINK * 3 / 2)

    def log_in(self, username: str) -> bool:
        form = self.client.get("/admin/login/", name="login form")
        match = TOKEN.search(form.text or "")
        body = urlencode(
            {
                "csrfmiddlewaretoken": match.group(1) if match else "",
                "username": username,
                "password": PASSWORD,
                "next": "/admin/",
            }
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        with self.client.post(
            "/admin/login/", data=body, headers=headers, name="login", allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code == 302 and response.headers.get("Location") == "/admin/":
                return True
            response.failure(f"login of {username}: {response.status_code}")
            return False

    def on_start(self) -> None:
        """Log in (again after a failure, up to LOGIN_ATTEMPTS: on a busy machine 200 password hashes
        at once can outlast the client's timeout, and a user left out would only add error pages)."""
        username = f"{PREFIX}-{next(numbers)}"
        for _ in range(LOGIN_ATTEMPTS):
            if self.log_in(username):
                state["logged_in"] += 1
                break
            state["login_retries"] += 1
        else:
            state["login_failures"] += 1
        if state["logged_in"] + state["login_failures"] == self.environment.runner.target_user_count:
            start_browsing(self.environment)
        everyone_in.wait()
        gevent.sleep(random.uniform(0, THINK))  # users don't all click at the same instant

    def page(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {response.headers.get('Location', '')}")

    @task(2)
    def admin_index(self) -> None:
        self.page("/admin/", "admin index")

    @task(2)
    def nodes(self) -> None:
        self.page("/admin/supervision/supervisionnode/", "nodes changelist")

    @task(2)
    def failures(self) -> None:
        self.page("/admin/supervision/supervisionfailure/", "failures changelist")

    @task(1)
    def failures_filtered(self) -> None:
        self.page("/admin/supervision/supervisionfailure/?failure_reason__exact=Crash", "failures filtered")

    @task(2)
    def agents(self) -> None:
        self.page("/admin/agents/agent/", "agents changelist")

    @task(2)
    def tree(self) -> None:
        self.page("/admin/supervision/tree/", "tree page")

    @task(3)
    def dashboard_snapshot(self) -> None:
        self.page("/admin/live/snapshot/", "dashboard snapshot")

    @task(3)
    def agents_live_list(self) -> None:
        self.page("/admin/agents/live/snapshot/", "agents live list")
