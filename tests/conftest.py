"""Fixtures shared by the whole suite: real PostgreSQL and NATS, never mocks."""

from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, settings

from mistersmith.jetstream.client import nats_url as console_nats_url

# The suite's streams hold the history of every earlier run (the machine's NATS keeps it): a bridge
# of a test starts at the streams' present, and the catch-up tests turn the catch-up on themselves.
# The environment is what servers and bridges the tests start as processes inherit. pytest-django
# has already read the settings by the time this file is imported (its pytest_load_initial_conftests
# runs django.setup() first), so the in-process bridges (BridgeThread, the e2e ASGI server) need the
# setting itself changed too: without it they project every retained Spawned of earlier runs.
os.environ.setdefault("MISTERSMITH_BRIDGE_CATCH_UP", "0")
django_settings.BRIDGE_CATCH_UP = os.environ["MISTERSMITH_BRIDGE_CATCH_UP"] != "0"

# Property tests (hypothesis): a few hundred examples, no per-example deadline (some examples
# write to the real database, whose speed varies on a busy machine). In CI (CI=true) the examples
# are derandomized and nothing is kept between runs: the same run passes or fails the same way.
# HYPOTHESIS_PROFILE picks another profile ("dev", "ci").
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server of this run: NATS_URL, or the embedded one (started on demand)."""
    return console_nats_url()


@pytest.fixture
def stand_in(nats_url):
    """The runtime stand-in answering agent.command, quiet otherwise (no chatter, failures or
    restart consumer): what a page's or a service's agent commands talk to."""
    import uuid

    from mistersmith.simulator.thread import SimulatorOptions, SimulatorThread

    options = SimulatorOptions(
        nats_url=nats_url,
        consumer_name=f"test-commands-{uuid.uuid4().hex[:10]}",
        seed=11,
        nodes=4,
        failure_rate=0.0,
        events=False,
        restarts=False,
    )
    thread = SimulatorThread(options)
    thread.start()
    assert thread.ready.wait(30) and thread.error is None, thread.error
    yield thread
    thread.stop()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "admin-pass-123")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def delete_bridge_consumers(prefix: str) -> None:
    """Durable consumers outlive a test on a shared NATS server: remove a test bridge's ones."""
    from mistersmith.live.bridge import delete_consumers

    delete_consumers(prefix)


def wait_until(condition, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition until it holds (a deadline, not a sleep, is what the test waits on)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def stop_after():
    """``stop_after(service)`` returns the started service and stops it after the test, however the
    test ends (tests/services.py: a NATS or PostgreSQL of the test's own must not outlive it)."""
    services = []

    def keep(service):
        services.append(service)
        return service

    yield keep
    for service in reversed(services):
        service.stop()


@pytest.fixture(autouse=True)
def _fresh_chart_cache():
    """The dashboard's charts keep settled buckets per process (history.py): a test's rows must not
    be hidden by what an earlier test's request kept."""
    from django.core.cache import caches

    caches["charts"].clear()
    yield
    caches["charts"].clear()
