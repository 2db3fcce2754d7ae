"""Restart pages: who may see and use them, the confirmation, CSRF, the admin action."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from supervision.models import SupervisionNode, SupervisionPolicy, SupervisionRestart

pytestmark = pytest.mark.django_db


@pytest.fixture
def family():
    root = SupervisionNode.objects.create(node_id=f"v-root-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    SupervisionPolicy.objects.create(node=root, max_restarts=5)
    children = []
    for index in range(2):
        child = SupervisionNode.objects.create(
            node_id=f"v-child{index}-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="x", parent=root
        )
        SupervisionPolicy.objects.create(node=child, supervision_strategy="OneForAll", min_restart_delay_ms=250)
        children.append(child)
    return root, children


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password="staff-pass-123", is_staff=True)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_anonymous_is_sent_to_login(client, family):
    response = client.get(reverse("supervision:restart", args=[family[0].pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_permission_gets_403_for_get_and_post(client, staff, family):
    grant(staff, "view_supervisionnode", "change_supervisionnode")
    client.force_login(staff)
    url = reverse("supervision:restart", args=[family[0].pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "x"}).status_code == 403
    assert not SupervisionRestart.objects.exists()


def test_confirmation_names_the_nodes_and_the_delay(client, staff, family):
    grant(staff, "restart_node")
    client.force_login(staff)
    _, (first, second) = family
    response = client.get(reverse("supervision:restart", args=[first.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert first.node_id in page and second.node_id in page  # OneForAll: the sibling too
    assert "250 ms" in page and "restarted too (OneForAll)" in page


def test_post_requires_csrf(staff, family):
    grant(staff, "restart_node")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(reverse("supervision:restart", args=[family[0].pk]), {"reason": "x"})
    assert response.status_code == 403
    assert not SupervisionRestart.objects.exists()


def test_confirmed_post_restarts_and_redirects(client, staff, family):
    grant(staff, "restart_node")
    client.force_login(staff)
    root, _ = family
    url = reverse("supervision:restart", args=[root.pk])
    fingerprint = client.get(url).context["plan"].fingerprint
    response = client.post(url, {"reason": "deploy", "fingerprint": fingerprint, "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    (restart,) = SupervisionRestart.objects.filter(node=root)
    assert restart.requested_by == staff and restart.reason == "deploy"


def test_next_cannot_leave_the_site(client, staff, family):
    grant(staff, "restart_node")
    client.force_login(staff)
    root, _ = family
    url = reverse("supervision:restart", args=[root.pk])
    fingerprint = client.get(url).context["plan"].fingerprint
    response = client.post(url, {"fingerprint": fingerprint, "next": "https://evil.example/"})
    assert response["Location"] == reverse("admin:supervision_supervisionnode_change", args=[root.pk])


def test_stale_form_is_shown_again(client, staff, family):
    grant(staff, "restart_node")
    client.force_login(staff)
    root, _ = family
    response = client.post(reverse("supervision:restart", args=[root.pk]), {"fingerprint": "something else"})
    assert response.status_code == 409
    assert not SupervisionRestart.objects.exists()


def test_unknown_node_redirects_with_a_message(admin_client):
    response = admin_client.get(reverse("supervision:restart", args=[uuid.uuid4()]), follow=True)
    assert "There is no supervision node" in response.content.decode()


def test_bulk_action_confirms_then_restarts_each_node(admin_client, family):
    root, (first, _) = family
    changelist = reverse("admin:supervision_supervisionnode_changelist")
    selection = {"action": "restart_selected", "_selected_action": [str(root.pk), str(first.pk)]}
    confirm = admin_client.post(changelist, selection)
    assert confirm.status_code == 200 and len(confirm.context["plans"]) == 2
    done = admin_client.post(changelist, {**selection, "confirm": "yes", "reason": "bulk"}, follow=True)
    texts = [str(m) for m in done.context["messages"]]
    assert any("Restart requested" in t and root.node_id in t for t in texts)
    assert SupervisionRestart.objects.filter(node=root).count() == 1
    assert SupervisionRestart.objects.filter(node__parent=root).count() == 2  # OneForAll of the child


def test_bulk_action_is_not_offered_without_the_permission(client, staff, family):
    grant(staff, "view_supervisionnode")
    client.force_login(staff)
    response = client.get(reverse("admin:supervision_supervisionnode_changelist"))
    assert "restart_selected" not in response.content.decode()


def test_confirmation_shows_the_budget_and_the_escalation_forecast(client, staff, family):
    from supervision.models import SupervisionFailure

    grant(staff, "restart_node")
    client.force_login(staff)
    root, (first, _) = family
    SupervisionPolicy.objects.filter(node=first).update(max_restarts=3, time_window_seconds=600)
    for _ in range(2):
        SupervisionFailure.objects.create(node=first, failure_reason="Crash", failure_detail="x")
    page = client.get(reverse("supervision:restart", args=[first.pk])).content.decode()
    assert "Restart budget: 2 of 3 restarts used in the last 600 s" in page
    assert "the next slot frees at <time datetime=" in page
    assert f'One more failure escalates to <a href="/admin/supervision/tree/?node={root.pk}">{root.node_id}</a>' in page
    SupervisionPolicy.objects.filter(node=first).update(escalate_on_limit=False)
    page = client.get(reverse("supervision:restart", args=[first.pk])).content.decode()
    assert "Restart budget: 2 of 3" in page and "One more failure escalates" not in page
