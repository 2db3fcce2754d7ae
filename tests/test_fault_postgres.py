"""PostgreSQL stopped for 10 s and started again under a running console: a clear 503 page while it
is away, the pool recovers by itself, and the bridge loses and repeats no event.

The console runs as a process of its own (uvicorn, the bridge on its loop) on a PostgreSQL and a
NATS of this test's own, so the test may stop them. Events keep arriving while the database is
away: the bridge must not ack a batch it could not commit. Session output makes loss and
duplication visible: each Output becomes one session message, so the session must hold exactly
line-0 .. line-(N-1) in order.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from mistersmith.jetstream.client import SyncNats
from tests.conftest import wait_until
from tests.services import Browser, ConsoleProcess, PrivateNats, PrivatePostgres, manage

pytestmark = pytest.mark.slow

EVENTS = 3_000
OUTAGE_SECONDS = 10
PASSWORD = "fault-pass-123"  # a throwaway database's user

SETUP = """
from django.contrib.auth import get_user_model
from agents.models import Agent, InteractiveSession
get_user_model().objects.create_superuser("fault-admin", "a@example.com", "{password}")
agent = Agent.objects.create(name="talker", status="Running")
session = InteractiveSession.objects.create(agent=agent, state="Ready")
print(json.dumps({{"agent": str(agent.pk), "session": str(session.pk)}}))
"""


def publish_outputs(nats_url: str, agent_id: str, done: threading.Event) -> None:
    """EVENTS outputs at about 200/s, so some arrive while the database is away."""
    client = SyncNats(nats_url)
    tag = uuid.uuid4().hex[:8]
    try:
        for index in range(EVENTS):
            payload = {"Output": {"agent_id": agent_id, "content": f"line-{index}"}}
            client.publish(f"agent.{agent_id}.events", payload, msg_id=f"{tag}-{index}")
            time.sleep(0.005)  # pacing of the publisher, not a wait for anything
    finally:
        client.close()
        done.set()


def test_postgres_restart_gives_503_then_recovers_and_loses_nothing(tmp_path, stop_after):
    database = stop_after(PrivatePostgres(tmp_path / "pg").start())
    nats = stop_after(PrivateNats(tmp_path).start())
    env = {"DATABASE_URL": database.url, "NATS_URL": nats.url, "DB_POOL_TIMEOUT": "2"}
    manage("migrate", "--noinput", env=env)
    output = manage("shell", "-c", "import json\n" + SETUP.format(password=PASSWORD), env=env)
    ids = json.loads(output.strip().splitlines()[-1])
    console = ConsoleProcess(**env, MISTERSMITH_BRIDGE_PREFIX="fault")

    def stored() -> list[str]:
        rows = database.query(
            "SELECT content FROM agents_sessionmessage WHERE session_id = %s ORDER BY position", (ids["session"],)
        )
        return [row[0] for row in rows]

    published = threading.Event()
    publisher = threading.Thread(target=publish_outputs, args=(nats.url, ids["agent"], published), daemon=True)
    try:
        console.start()
        browser = Browser(console.url)
        browser.log_in("fault-admin", PASSWORD)
        assert browser.get("/admin/")[0] == 200
        publisher.start()
        wait_until(lambda: len(stored()) >= 300, timeout=60, what="the first outputs in the projection")

        database.stop()
        went_away = time.monotonic()
        answers = []
        while time.monotonic() - went_away < OUTAGE_SECONDS:  # the outage itself, requests all along it
            answers.append(browser.get("/admin/"))
        assert answers and all(status == 503 for status, _ in answers), [status for status, _ in answers]
        assert all("database is not available" in body and "Traceback" not in body for _, body in answers)

        database.start()
        wait_until(lambda: browser.get("/admin/")[0] == 200, timeout=30, what="the pool to recover by itself")
        assert published.wait(120), "the publisher did not finish"
        wait_until(lambda: len(stored()) >= EVENTS, timeout=120, what="every output in the projection")
        assert stored() == [f"line-{index}" for index in range(EVENTS)]  # none lost, none twice, in order
    finally:
        console.stop()
