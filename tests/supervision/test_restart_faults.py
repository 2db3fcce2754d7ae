"""A restart requested while its node is being deleted, and an answer for a node that is gone."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.db import connection, transaction

from mistersmith.live.frames import FrameBuffer
from mistersmith.live.registry import BridgeStats
from supervision import services
from supervision.feeds import apply_control
from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


def test_a_restart_racing_the_deletion_of_its_node_is_refused_clearly_and_sends_nothing(admin_user, stand_in):
    node = SupervisionNode.objects.create(
        node_id=f"doomed-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="x"
    )
    SupervisionPolicy.objects.create(node=node, max_restarts=5)
    deleted, may_commit = threading.Event(), threading.Event()
    outcome: dict = {}

    def delete_then_wait() -> None:
        with transaction.atomic():
            SupervisionNode.objects.filter(pk=node.pk).delete()  # holds the row lock until commit
            deleted.set()
            may_commit.wait(30)
        connection.close()

    def request() -> None:
        try:
            outcome["result"] = services.request_restart(node.pk, user=admin_user, reason="race")
        except services.RestartError as error:
            outcome["error"] = error
        finally:
            connection.close()

    deleter = threading.Thread(target=delete_then_wait)
    deleter.start()
    assert deleted.wait(10)
    requester = threading.Thread(target=request)
    requester.start()
    wait_until(lambda: lock_waiters() >= 1, what="the restart to wait on the deleted node's lock")
    may_commit.set()
    deleter.join(10)
    requester.join(30)

    assert isinstance(outcome.get("error"), services.NodeNotFound), outcome
    assert "may have just been deleted" in str(outcome["error"])
    assert not SupervisionRestart.objects.filter(node_id=node.pk).exists()


def test_the_restart_page_after_the_node_went_away_says_so(admin_client):
    node = SupervisionNode.objects.create(
        node_id=f"gone-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="x"
    )
    url = f"/admin/supervision/restart/{node.pk}/"
    assert admin_client.get(url).status_code == 200
    node.delete()
    response = admin_client.post(url, {"reason": "x", "fingerprint": "stale"}, follow=True)
    assert response.status_code == 200
    assert "There is no supervision node" in response.content.decode()


def test_an_answer_for_a_deleted_nodes_restart_changes_nothing_and_stops_nothing():
    stats = BridgeStats()
    answer = {
        "RestartCompleted": {
            "restart_id": str(uuid.uuid4()),
            "node_id": str(uuid.uuid4()),
            "success": True,
            "error_message": None,
            "new_instance_id": None,
        }
    }
    apply_control([(1, "system.control", json.dumps(answer).encode())], stats, "test", FrameBuffer())
    assert stats.processed["restart_unknown"] == 1 and not stats.rejected
