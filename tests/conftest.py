"""Fixtures shared by the whole suite: real PostgreSQL and NATS, never mocks."""

from __future__ import annotations

import pytest

from mistersmith.nats import nats_url as console_nats_url


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server of this run: NATS_URL, or the embedded one (started on demand)."""
    return console_nats_url()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "admin-pass-123")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def delete_bridge_consumers(prefix: str) -> None:
    """Durable consumers outlive a test on a shared NATS server: remove a test bridge's ones."""
    from mistersmith.bridge import delete_consumers

    delete_consumers(prefix)


def wait_until(condition, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition until it holds (a deadline, not a sleep, is what the test waits on)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)
