"""A message the database refuses does not block its feed: the batch is applied one message at a
time, the refused one is dead-lettered ("apply_failed"), the rest are applied, and the bridge goes
on. The refusal is real: a trigger that raises a data exception for one Output's content, as a
check the runtime's schema could add."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from agents.models import Agent, InteractiveSession, SessionMessage
from mistersmith.jetstream import client as nats
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import DeadLetter
from tests.conftest import delete_bridge_consumers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TRIGGER = """
CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.content = 'poison' THEN RAISE EXCEPTION 'poison refused' USING ERRCODE = '22000'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_poison BEFORE INSERT ON agents_sessionmessage
  FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();
"""


@pytest.fixture
def poison_trigger():
    with connection.cursor() as cursor:
        cursor.execute(TRIGGER)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_poison ON agents_sessionmessage; DROP FUNCTION test_refuse_poison();")


def test_a_refused_message_is_dead_lettered_and_the_rest_applied(poison_trigger):
    agent = Agent.objects.create(name="talker", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    prefix = f"test-poison-{uuid.uuid4().hex[:8]}"
    bridge = BridgeThread(consumer_prefix=prefix)
    contents = [f"line-{i}" for i in range(5)] + ["poison"] + [f"line-{i}" for i in range(5, 10)]
    try:
        bridge.start()
        assert bridge.ready.wait(30)
        sequences = []
        for content in contents:
            payload = {"Output": {"agent_id": str(agent.pk), "content": content}}
            sequences.append(nats.connection().publish(f"agent.{agent.pk}.events", payload).seq)
        wait_until(
            lambda: SessionMessage.objects.filter(session=session).count() >= 10, what="the outputs around the poison"
        )
        stored = SessionMessage.objects.filter(session=session).order_by("position").values_list("content", flat=True)
        assert list(stored) == [content for content in contents if content != "poison"]
        letter = DeadLetter.objects.get(stream="AGENT_EVENTS", sequence=sequences[5])
        assert letter.reason == "apply_failed" and "poison refused" in letter.error
        assert bridge.stats.rejected["apply_failed"] == 1 and bridge.is_alive()
    finally:
        bridge.stop()
        delete_bridge_consumers(prefix)
