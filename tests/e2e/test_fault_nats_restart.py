"""NATS stopped and started again while 10,000 agent events are published: none lost, none twice.

The console runs as a process of its own (uvicorn, the bridge on its loop) against a NATS server of
this test's own, which the test stops and starts on the same port and store. The publisher retries
each event until the stream acks it, with a ``Nats-Msg-Id`` so a retry of an event that was stored
after all is dropped by the stream. Session output makes loss and duplication visible: each Output
becomes one session message, so the session must hold exactly line-0 .. line-9999 in order.

The browser on the agent's page shows "reconnecting" while the bridge has no NATS, then "live"
again, and its live output catches up to the last line.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from agents.models import Agent, InteractiveSession, SessionMessage
from mistersmith.jetstream.client import NatsUnavailable, SyncNats
from mistersmith.live.bridge import consumers_exist
from tests.conftest import wait_until
from tests.e2e.conftest import log_in
from tests.services import ConsoleProcess, PrivateNats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]

EVENTS = 10_000
STOP_AFTER = 2_500  # published events before NATS is stopped


class Publisher(threading.Thread):
    """Publishes EVENTS outputs in order, each retried until acked; ``acked`` counts them."""

    def __init__(self, url: str, agent_id: str) -> None:
        super().__init__(name="fault-publisher", daemon=True)
        self.url, self.agent_id = url, agent_id
        self.tag = uuid.uuid4().hex[:8]
        self.acked = 0
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        client = SyncNats(self.url)
        try:
            for index in range(EVENTS):
                payload = {"Output": {"agent_id": self.agent_id, "content": f"line-{index}"}}
                while True:
                    try:
                        client.publish(
                            f"agent.{self.agent_id}.events", payload, msg_id=f"{self.tag}-{index}", timeout=1
                        )
                        break
                    except NatsUnavailable:
                        self.retries += 1
                self.acked += 1
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            client.close()


def test_nats_restart_loses_and_repeats_nothing_and_the_page_catches_up(page, admin_user, tmp_path, stop_after):
    nats = stop_after(PrivateNats(tmp_path).start())
    agent = Agent.objects.create(name="talker", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    prefix = f"test-fault-{uuid.uuid4().hex[:8]}"
    console = ConsoleProcess(NATS_URL=nats.url, MISTERSMITH_BRIDGE_PREFIX=prefix)
    watcher = SyncNats(nats.url)
    publisher = Publisher(nats.url, str(agent.pk))
    try:
        console.start()
        wait_until(lambda: consumers_exist(prefix, watcher), timeout=30, what="the bridge's consumers")
        watcher.close()
        log_in(page, console.url)
        page.goto(f"{console.url}/admin/agents/live/{agent.pk}/")
        badge = page.locator("#live-badge")

        def badge_is(state: str) -> None:
            # polled on a timer: under this load animation-frame polling may not get a turn
            script = f"() => document.getElementById('live-badge').dataset.state === '{state}'"
            page.wait_for_function(script, polling=100, timeout=30_000)

        page.wait_for_selector("#live-badge[data-state=live]")

        publisher.start()
        wait_until(lambda: publisher.acked >= STOP_AFTER, timeout=60, what="the first events")
        nats.stop()
        badge_is("reconnecting")
        nats.start()
        badge_is("live")

        publisher.join(120)
        assert publisher.error is None, publisher.error
        assert not publisher.is_alive() and publisher.acked == EVENTS
        wait_until(
            lambda: SessionMessage.objects.filter(session=session).count() >= EVENTS,
            timeout=120,
            what="every event in the projection",
        )
        contents = list(
            SessionMessage.objects.filter(session=session).order_by("position").values_list("content", flat=True)
        )
        assert contents == [f"line-{index}" for index in range(EVENTS)]  # none lost, none twice, in order
        page.wait_for_function(
            "() => document.getElementById('agent-output').textContent.includes('line-9999')", timeout=30_000
        )
        assert badge.get_attribute("data-state") == "live"
    finally:
        publisher.join(5)
        console.stop()
