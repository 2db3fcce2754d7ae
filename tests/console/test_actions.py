"""Issue 14, item 1: a person's own restarts and bulk runs, with their outcomes, for every live page
(actions:mine). Restarts go through the real restart service (PostgreSQL rows, the RestartNode on
NATS), are completed as the bridge completes them and expired by its sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db.models.functions import Now
from django.test import Client
from django.urls import reverse

from agents import bulk
from agents.models import Agent
from supervision import services
from supervision.events import RestartCompleted
from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart

pytestmark = pytest.mark.django_db(transaction=True)


def restartable(name: str) -> SupervisionNode:
    node = SupervisionNode.objects.create(node_id=name, node_type="Service", node_type_detail="db")
    SupervisionPolicy.objects.create(node=node, backoff_strategy="Fixed", min_restart_delay_ms=10)
    return node


def restart(node: SupervisionNode, user) -> SupervisionRestart:
    outcome = services.request_restart(node.pk, user=user, reason="test")
    assert outcome.status == "requested", outcome.message
    return outcome.restarts[0]


def complete(restarted: SupervisionRestart, *, success: bool, error: str | None = None) -> None:
    answer = RestartCompleted(restarted.pk, restarted.node_id, success, error, None)
    assert services.complete_restart(answer) == "completed"


def test_a_user_sees_each_of_their_restarts_pending_then_succeeded_failed_or_timed_out(admin_client, admin_user):
    names = ["act-pending", "act-ok", "act-failed", "act-late"]
    restarts = {name: restart(restartable(name), admin_user) for name in names}
    complete(restarts["act-ok"], success=True)
    complete(restarts["act-failed"], success=False, error="the database did not come back")
    # No answer, and its time is up (a minute ago, delay 0, escalation timeout 1 s): the sweep expires it.
    SupervisionPolicy.objects.filter(node__node_id="act-late").update(escalation_timeout_seconds=1)
    SupervisionRestart.objects.filter(pk=restarts["act-late"].pk).update(
        restart_delay_ms=0, started_at=Now() - timedelta(minutes=1)
    )
    assert services.expire_overdue_restarts() >= 1

    answer = admin_client.get(reverse("actions:mine"))
    assert answer.status_code == 200
    states = {row["node_name"]: row["state"] for row in answer.json()["restarts"]}
    assert states == {"act-pending": "pending", "act-ok": "succeeded", "act-failed": "failed", "act-late": "timed_out"}
    failed = next(row for row in answer.json()["restarts"] if row["node_name"] == "act-failed")
    assert failed["error"] == "the database did not come back"
    assert failed["record_url"] == reverse(
        "admin:supervision_supervisionrestart_change", args=[restarts["act-failed"].pk]
    )
    assert failed["tree_url"].endswith(f"?node={restarts['act-failed'].node_id}")


def test_only_the_users_own_actions_and_links_they_may_follow(django_user_model, admin_user):
    restart(restartable("act-someone-else"), admin_user)
    operator = django_user_model.objects.create_user("act-operator", password="act-pass-1", is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["restart_node", "view_supervisionnode"]))
    operator = django_user_model.objects.get(pk=operator.pk)
    mine = restart(restartable("act-mine"), operator)
    client = Client()
    client.force_login(operator)
    body = client.get(reverse("actions:mine")).json()
    assert [row["id"] for row in body["restarts"]] == [str(mine.pk)]
    assert body["restarts"][0]["record_url"] is None  # no view permission on restarts: no link
    assert body["bulk"] == []


def test_the_endpoint_needs_a_logged_in_staff_user(client, django_user_model):
    assert client.get(reverse("actions:mine")).status_code == 401
    user = django_user_model.objects.create_user("act-not-staff", password="act-pass-1")
    client.force_login(user)
    assert client.get(reverse("actions:mine")).status_code in (401, 403)


def test_the_users_bulk_runs_come_with_their_counts(stand_in, admin_client, admin_user):
    agents = [Agent.objects.create(name=f"act-bulk-{i}", status="Running") for i in range(2)]
    run = bulk.start_bulk(admin_user, bulk.plan_bulk("Pause", agent_ids=[a.pk for a in agents]), wait=True)
    body = admin_client.get(reverse("actions:mine")).json()
    assert body["bulk"] == [
        {
            "id": str(run.pk),
            "command": "Pause",
            "total": 2,
            "counts": {"ok": 2},
            "state": "done",
            "requested_at": body["bulk"][0]["requested_at"],
            "url": reverse("agent_pages:bulk_run", args=[run.pk]),
        }
    ]
    assert uuid.UUID(body["bulk"][0]["id"]) == run.pk
