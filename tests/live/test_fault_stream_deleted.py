"""A stream deleted under a running bridge: a clear error, the stream and consumer made again, and
the events published after it applied, without a crash loop.

It runs on a NATS server of its own: deleting AGENT_EVENTS on the suite's server would take the
stream from every other test.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from agents.models import Agent, InteractiveSession, SessionMessage
from mistersmith.jetstream.client import NatsUnavailable, SyncNats
from mistersmith.live.bridge import BridgeThread
from tests.conftest import wait_until
from tests.services import PrivateNats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def publish_lines(client: SyncNats, agent_id: str, lines: range) -> None:
    for index in lines:
        payload = {"Output": {"agent_id": agent_id, "content": f"line-{index}"}}
        while True:  # until the stream is there again (the bridge makes it when it starts again)
            try:
                client.publish(f"agent.{agent_id}.events", payload, msg_id=f"{agent_id}-{index}", timeout=1)
                break
            except NatsUnavailable:
                continue


def test_a_deleted_stream_is_made_again_and_the_bridge_goes_on(tmp_path, caplog, stop_after):
    nats = stop_after(PrivateNats(tmp_path).start())
    agent = Agent.objects.create(name="talker", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    bridge = BridgeThread(consumer_prefix=f"test-deleted-{uuid.uuid4().hex[:8]}", url=nats.url)
    client = SyncNats(nats.url)

    def lines() -> list[str]:
        return list(
            SessionMessage.objects.filter(session=session).order_by("position").values_list("content", flat=True)
        )

    try:
        bridge.start()
        assert bridge.ready.wait(30)
        publish_lines(client, str(agent.pk), range(100))
        wait_until(lambda: len(lines()) >= 100, what="the first outputs")

        with caplog.at_level(logging.WARNING, logger="mistersmith.live.bridge"):
            client.run(client.client().jetstream().delete_stream("AGENT_EVENTS"))
            wait_until(
                lambda: any("AGENT_EVENTS was deleted" in r.getMessage() for r in caplog.records),
                what="a clear error about the deleted stream",
            )
            publish_lines(client, str(agent.pk), range(100, 200))
            wait_until(lambda: len(lines()) >= 200, timeout=60, what="the outputs after the deletion")
        assert lines() == [f"line-{index}" for index in range(200)]
        assert bridge.is_alive()
        restarts = [r for r in caplog.records if "starts again" in r.getMessage()]
        assert 1 <= len(restarts) <= 3, [r.getMessage() for r in restarts]  # came back, no crash loop
    finally:
        bridge.stop()
        client.close()
