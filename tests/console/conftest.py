"""Fixtures shared by the mistersmith tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.freshness import CACHE


@pytest.fixture
def stopped_bridge(monkeypatch) -> Iterator[str]:
    """The name of this installation's bridge consumer on AGENT_EVENTS as a stopped bridge leaves it: it
    exists, and nobody fetches from it (what is published from now on waits there, so it lags).

    The installation's prefix (``MISTERSMITH_BRIDGE_PREFIX``) is the test's own, and the freshness
    cache is emptied before and after, so no other test's figures are read."""
    prefix = f"test-bridge-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", prefix)
    nats = console_nats.connection()
    js = nats.client().jetstream()
    name = f"{prefix}-agents"
    config = ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW)
    nats.run(js.add_consumer("AGENT_EVENTS", config))
    CACHE.clear()
    yield name
    nats.run(js.delete_consumer("AGENT_EVENTS", name))
    CACHE.clear()
