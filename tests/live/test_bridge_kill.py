"""A bridge killed with SIGKILL mid-stream and started again: every event applied exactly once.

The bridge runs as its own process (``manage.py bridge``) on the test database. Session output
makes loss and duplication visible: each Output becomes one session message at the next
position, so N events must give exactly the contents 0..N-1 in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.db import connection

from agents.models import Agent, InteractiveSession, SessionMessage
from mistersmith.embedded import postgres_url
from mistersmith.jetstream import client as nats
from tests.conftest import delete_bridge_consumers, wait_until
from tests.e2e.conftest import bridge_consumers_exist

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
EVENTS = 400


def start_bridge(prefix: str, nats_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MISTERSMITH_BRIDGE_PREFIX": prefix,
        "NATS_URL": nats_url,
        "DATABASE_URL": postgres_url(connection.settings_dict),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "bridge"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: bridge_consumers_exist(prefix) or process.poll() is not None, what="the bridge's consumers")
    assert process.poll() is None, process.stderr.read().decode()
    return process


def test_a_killed_bridge_loses_and_repeats_nothing(nats_url):
    agent = Agent.objects.create(name="talker", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    prefix = f"test-kill-{uuid.uuid4().hex[:10]}"
    subject = f"agent.{agent.pk}.events"
    bridge = start_bridge(prefix, nats_url)

    def publish() -> None:
        client = nats.connection()
        for index in range(EVENTS):
            payload = {"Output": {"agent_id": str(agent.pk), "content": f"line-{index}"}}
            client.publish(subject, payload, msg_id=uuid.uuid4().hex)

    publisher = threading.Thread(target=publish)
    try:
        publisher.start()
        wait_until(lambda: SessionMessage.objects.filter(session=session).count() >= 50, what="the first outputs")
        bridge.send_signal(signal.SIGKILL)  # mid-stream: a batch may be fetched and not yet acked
        bridge.wait(10)
        publisher.join(60)
        bridge = start_bridge(prefix, nats_url)
        wait_until(
            lambda: SessionMessage.objects.filter(session=session).count() >= EVENTS, timeout=60, what="every output"
        )
    finally:
        publisher.join(60)
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(20)
        delete_bridge_consumers(prefix)
    contents = list(
        SessionMessage.objects.filter(session=session).order_by("position").values_list("content", flat=True)
    )
    assert contents == [f"line-{index}" for index in range(EVENTS)]
    positions = list(
        SessionMessage.objects.filter(session=session).order_by("position").values_list("position", flat=True)
    )
    assert positions == list(range(EVENTS))
