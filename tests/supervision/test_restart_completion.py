"""RestartCompleted answers on system.control complete the rows, through the real bridge."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connections

from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import envelope
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import DeadLetter
from supervision.models import SupervisionNode, SupervisionRestart
from tests.conftest import delete_bridge_consumers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bridge(nats_url):
    consumer = f"test-control-{uuid.uuid4().hex[:10]}"
    thread = BridgeThread(consumer_prefix=consumer, url=nats_url)
    thread.start()
    assert thread.ready.wait(15), "bridge did not start"
    yield thread
    thread.stop()
    connections.close_all()
    delete_bridge_consumers(consumer)


def publish(payload: dict | bytes, msg_id: str | None = None) -> None:
    nats.connection().publish("system.control", payload, msg_id=msg_id or uuid.uuid4().hex)


def pending_restart() -> SupervisionRestart:
    node = SupervisionNode.objects.create(node_id=f"c-{uuid.uuid4().hex[:8]}", node_type="RootSupervisor")
    return SupervisionRestart.objects.create(
        node=node, restart_attempt_number=1, restart_delay_ms=0, command_sequence=1
    )


def completed(restart_id, **fields) -> dict:
    return {"RestartCompleted": {"restart_id": str(restart_id), **fields}}


def test_answer_completes_the_row_once(bridge):
    restart = pending_restart()
    instance = uuid.uuid4()
    answer = completed(restart.pk, node_id=str(restart.node_id), success=True, new_instance_id=str(instance))
    publish(envelope(answer, message_id=uuid.uuid4().hex), msg_id=f"completed-{restart.pk}")
    wait_until(lambda: SupervisionRestart.objects.get(pk=restart.pk).completed_at is not None)
    restart.refresh_from_db()
    assert (restart.success, restart.new_instance_id, restart.error_message) == (True, instance, None)
    first_completion = restart.completed_at

    # The same answer again (a redelivery under another message id) changes nothing.
    failed_again = completed(restart.pk, success=False, error_message="late duplicate")
    publish(failed_again)
    wait_until(lambda: bridge.stats.processed["restart_duplicate"] >= 1)
    restart.refresh_from_db()
    assert (restart.success, restart.completed_at) == (True, first_completion)


def test_a_bare_failed_answer_keeps_its_error(bridge):
    restart = pending_restart()
    publish(completed(restart.pk, success=False, error_message="agent did not come back"))
    wait_until(lambda: SupervisionRestart.objects.get(pk=restart.pk).completed_at is not None)
    restart.refresh_from_db()
    assert (restart.success, restart.error_message) == (False, "agent did not come back")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "not_json"),
        ({"RestartCompleted": {"restart_id": "not-a-uuid", "success": True}}, "bad_field"),
        ({"RestartCompleted": {"restart_id": str(uuid.uuid4()), "success": "yes"}}, "bad_field"),
        ({"A": 1, "B": 2}, "not_externally_tagged"),
    ],
)
def test_malformed_answers_are_counted_and_change_nothing(bridge, payload, reason):
    restart = pending_restart()
    before = bridge.stats.rejected[reason]
    publish(payload)
    wait_until(lambda: bridge.stats.rejected[reason] > before)
    restart.refresh_from_db()
    assert restart.completed_at is None
    letter = DeadLetter.objects.filter(reason=reason).latest("id")
    assert letter.stream == "SYSTEM_EVENTS" and letter.subject == "system.control" and letter.sequence > 0


def test_an_answer_for_an_unknown_restart_is_counted(bridge):
    publish(completed(uuid.uuid4(), success=True))
    wait_until(lambda: bridge.stats.processed["restart_unknown"] >= 1)


def test_the_bridge_ignores_other_control_messages(bridge):
    publish({"Startup": {"version": "1"}})
    wait_until(lambda: bridge.stats.processed["ignored:Startup"] >= 1)
    assert json.dumps(dict(bridge.stats.rejected)) == "{}"
