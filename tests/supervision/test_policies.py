"""Saving a policy (supervision/policies.py): whoever saves it, the policy service saves it and
announces it on SUPERVISION_EVENTS after the commit, and the bridge frames it."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from django.db import transaction
from django.urls import reverse

from mistersmith.jetstream.reader import read_stream
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.registry import BridgeStats
from supervision.feeds import apply_supervision_batch
from supervision.models import SupervisionNode, SupervisionPolicy
from supervision.policies import policy_subject, save_policy
from tests.supervision.test_admin import node_form, policy_form, post_node

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


def test_a_policy_saved_in_the_node_page_inline_is_announced_by_the_service_too(
    admin_client, django_capture_on_commit_callbacks
):
    data = node_form(node_id=f"inline-{uuid.uuid4().hex[:8]}")
    data.update({"policy-TOTAL_FORMS": "1", "policy-INITIAL_FORMS": "0", "policy-MAX_NUM_FORMS": "1"})
    policy = policy_form(SupervisionNode(), backoff_strategy="Linear")
    data.update({f"policy-0-{name}": value for name, value in policy.items() if name != "node"})
    with django_capture_on_commit_callbacks(execute=True):
        response = post_node(admin_client, data)
    assert response.status_code == 302
    node = SupervisionNode.objects.get(node_id=data["node_id"])
    assert SupervisionPolicy.objects.get(node=node).backoff_strategy == "Linear"
    published = read_stream("SUPERVISION_EVENTS", subject=policy_subject(node.pk))
    assert len(published) == 1
    assert json.loads(published[0].data)["payload"]["PolicySaved"]["policy"]["backoff_strategy"] == "Linear"


def test_the_service_publishes_only_once_the_save_is_committed(admin_user):
    node = SupervisionNode.objects.create(node_id=f"svc-{uuid.uuid4().hex[:8]}", node_type="RootSupervisor")
    policy = SupervisionPolicy(node=node, max_restarts=4)
    with transaction.atomic():  # the caller's transaction: nothing is announced before it commits
        save_policy(policy, admin_user)
        assert read_stream("SUPERVISION_EVENTS", subject=policy_subject(node.pk)) == []
    assert SupervisionPolicy.objects.filter(node=node, max_restarts=4).exists()
    (published,) = read_stream("SUPERVISION_EVENTS", subject=policy_subject(node.pk))
    assert json.loads(published.data)["payload"]["PolicySaved"]["changed_by"] == admin_user.username


def test_a_supervision_message_that_is_not_json_is_dead_lettered():
    from mistersmith.live.models import DeadLetter

    frames, stats = FrameBuffer(), BridgeStats(Counter(), Counter())
    apply_supervision_batch([(5, "supervision.error.high.pool", b"\xff not json")], stats, "test", frames)
    assert sum(stats.rejected.values()) == 1 and not frames.take()
    assert DeadLetter.objects.filter(stream="SUPERVISION_EVENTS", sequence=5).exists()
