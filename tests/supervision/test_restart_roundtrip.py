"""The whole restart loop through real parts: console service -> NATS -> stand-in -> NATS -> bridge."""

from __future__ import annotations

import uuid

import pytest
from django.db import connections

from mistersmith.jetstream import client as nats
from mistersmith.live.bridge import BridgeThread
from mistersmith.simulator.thread import SimulatorOptions, SimulatorThread
from supervision import services
from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart
from tests.conftest import delete_bridge_consumers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runtime_and_bridge(nats_url):
    tag = uuid.uuid4().hex[:10]
    bridge = BridgeThread(consumer_prefix=f"test-bridge-{tag}", url=nats_url)
    simulator = SimulatorThread(
        SimulatorOptions(rate=0, failure_rate=0, restart_failure_ratio=0, consumer_name=f"test-sim-{tag}")
    )
    bridge.start()
    simulator.start()
    assert bridge.ready.wait(20) and simulator.ready.wait(30) and simulator.error is None
    yield
    simulator.stop()
    bridge.stop()
    connections.close_all()
    delete_bridge_consumers(f"test-bridge-{tag}")
    client = nats.connection()
    client.run(client.client().jetstream().delete_consumer("SYSTEM_EVENTS", f"test-sim-{tag}"))


def test_a_requested_restart_is_answered_and_completed(runtime_and_bridge, admin_user):
    node = SupervisionNode.objects.create(
        node_id=f"loop-{uuid.uuid4().hex[:8]}", node_type="Service", node_type_detail="db"
    )
    SupervisionPolicy.objects.create(node=node, backoff_strategy="Fixed", min_restart_delay_ms=50)
    outcome = services.request_restart(node.pk, user=admin_user, reason="round trip")
    (restart,) = outcome.restarts
    wait_until(
        lambda: SupervisionRestart.objects.get(pk=restart.pk).completed_at is not None,
        what="the stand-in's answer completing the restart",
    )
    restart.refresh_from_db()
    assert restart.success is True and restart.error_message is None
    node.refresh_from_db()
    assert node.status == "active"
