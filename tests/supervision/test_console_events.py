"""The console's own actions become events on SUPERVISION_EVENTS, and the bridge frames them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.urls import reverse

from mistersmith.bridge import BridgeStats, apply_supervision_batch
from mistersmith.frames import FrameBuffer
from mistersmith.stream_reader import read_stream
from supervision.console_events import policy_subject
from supervision.models import SupervisionNode
from tests.supervision.test_admin import policy_form

pytestmark = pytest.mark.django_db(transaction=True)  # the bridge closes its connections after each batch


def test_a_saved_policy_is_published_and_framed_for_the_tree(admin_client, django_capture_on_commit_callbacks):
    node = SupervisionNode.objects.create(node_id="evented", node_type="RootSupervisor")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:supervision_supervisionpolicy_add"), policy_form(node, backoff_strategy="Linear")
        )
    assert response.status_code == 302

    published = read_stream("SUPERVISION_EVENTS", subject=policy_subject(node.pk))
    assert len(published) == 1
    body = json.loads(published[0].data)["payload"]["PolicySaved"]
    assert body["node_id"] == str(node.pk) and body["node_name"] == "evented" and body["changed_by"] == "admin"
    assert body["policy"]["backoff_strategy"] == "Linear"

    frames, stats = FrameBuffer(), BridgeStats(Counter(), Counter())
    message = published[0]
    apply_supervision_batch([(message.sequence, message.subject, message.data)], stats, "test", frames)
    (frame,) = frames.take()
    assert frame["topic"] == "supervision"
    (event,) = frame["events"]
    assert event["kind"] == "policy_saved" and event["node_id"] == str(node.pk)
    assert event["stream"] == "SUPERVISION_EVENTS" and event["sequence"] == message.sequence


def test_a_supervision_message_that_is_not_json_is_dead_lettered():
    from mistersmith.models import DeadLetter

    frames, stats = FrameBuffer(), BridgeStats(Counter(), Counter())
    apply_supervision_batch([(5, "supervision.error.high.pool", b"\xff not json")], stats, "test", frames)
    assert sum(stats.rejected.values()) == 1 and not frames.take()
    assert DeadLetter.objects.filter(stream="SUPERVISION_EVENTS", sequence=5).exists()
