"""The backtest endpoint of the policy form: who may ask, bad input as a clear 400, the saved
policy beside the edited values, nothing written, and a constant number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from supervision.models import SupervisionPolicy
from tests.supervision.test_backtest import FIXED, child_with_policy, db_now, fail

pytestmark = pytest.mark.django_db

URL_NAME = "supervision:policy_backtest"


def settings_query(policy: SupervisionPolicy, **overrides) -> dict[str, str]:
    """The form's values as policy_backtest.js sends them."""
    query = {
        "node": str(policy.node_id),
        "supervision_strategy": policy.supervision_strategy,
        "max_restarts": str(policy.max_restarts),
        "time_window_seconds": str(policy.time_window_seconds),
        "backoff_strategy": policy.backoff_strategy,
        "backoff_factor": "2.00",
        "min_restart_delay_ms": str(policy.min_restart_delay_ms),
        "max_restart_delay_ms": str(policy.max_restart_delay_ms),
        "escalate_on_limit": "true",
    }
    query.update(overrides)
    return query


@pytest.fixture
def failing_policy():
    node, policy = child_with_policy(max_restarts=3, time_window_seconds=60, **FIXED)
    start = db_now() - timedelta(hours=3)
    for seconds in range(4):
        fail(node, start + timedelta(seconds=seconds))
    return policy


def test_saved_beside_edited_for_each_period(admin_client, failing_policy):
    query = settings_query(failing_policy, max_restarts="10")
    body = admin_client.get(reverse(URL_NAME), query).json()
    saved = {period["days"]: period for period in body["saved"]["periods"]}
    edited = {period["days"]: period for period in body["edited"]["periods"]}
    assert sorted(saved) == [1, 7, 30]
    assert (saved[1]["restarts"], saved[1]["escalations"], saved[1]["delay_seconds"]) == (2, 2, 0.2)
    assert (edited[1]["restarts"], edited[1]["escalations"], edited[1]["delay_seconds"]) == (4, 0, 0.4)
    assert body["node"]["name"] == failing_policy.node.node_id and body["node"]["has_parent"] is True
    failing_policy.refresh_from_db()
    assert failing_policy.max_restarts == 3  # the edited values were never saved


def test_the_node_alone_replays_the_saved_policy(admin_client, failing_policy):
    body = admin_client.get(reverse(URL_NAME), {"node": str(failing_policy.node_id)}).json()
    assert body["edited"] is None and body["saved"]["periods"][0]["restarts"] == 2


def test_a_node_without_policy_has_no_saved_figures(admin_client):
    node, policy = child_with_policy(**FIXED)
    query = settings_query(policy)
    policy.delete()
    body = admin_client.get(reverse(URL_NAME), query).json()
    assert body["saved"] is None and body["edited"]["periods"][0]["failures"] == 0
    assert not SupervisionPolicy.objects.filter(node=node).exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_restarts": "-1"}, "max_restarts"),
        ({"time_window_seconds": "zero"}, "time_window_seconds"),
        ({"backoff_strategy": "Sideways"}, "backoff_strategy"),
        ({"min_restart_delay_ms": "500", "max_restart_delay_ms": "100"}, "max_restart_delay_ms"),  # model clean()
        (
            {"backoff_strategy": "Exponential", "backoff_factor": "0.50"},
            "backoff_factor",
        ),  # Exponential needs a factor above 1
        ({"escalate_on_error_types": "Meteor"}, "escalate_on_error_types"),
    ],
)
def test_bad_values_are_a_400_with_the_forms_messages(admin_client, failing_policy, overrides, field):
    response = admin_client.get(reverse(URL_NAME), settings_query(failing_policy, **overrides))
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and body["error"].startswith("These values are not a valid policy")


def test_a_missing_or_unknown_node(admin_client):
    assert admin_client.get(reverse(URL_NAME)).status_code == 400
    assert admin_client.get(reverse(URL_NAME), {"node": "not-a-uuid"}).status_code == 404
    assert admin_client.get(reverse(URL_NAME), {"node": "00000000-0000-0000-0000-000000000001"}).status_code == 404


def test_only_reads(admin_client, failing_policy):
    assert admin_client.post(reverse(URL_NAME), {"node": str(failing_policy.node_id)}).status_code == 405


@pytest.mark.parametrize(
    ("permissions", "status"),
    [
        ((), 403),
        (("view_supervisionpolicy",), 403),  # the figures are made of failures: their view too
        (("view_supervisionfailure",), 403),
        (("view_supervisionpolicy", "view_supervisionfailure"), 200),
    ],
)
def test_staff_need_the_view_of_policies_and_of_failures(
    client, django_user_model, failing_policy, permissions, status
):
    user = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    assert client.get(reverse(URL_NAME), {"node": str(failing_policy.node_id)}).status_code == status


def test_anonymous_and_non_staff_are_refused(client, django_user_model, failing_policy):
    query = {"node": str(failing_policy.node_id)}
    assert client.get(reverse(URL_NAME), query).status_code == 401
    member = django_user_model.objects.create_user("member", password="x")
    member.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(member)
    assert client.get(reverse(URL_NAME), query).status_code == 403


def test_queries_do_not_grow_with_the_failures(admin_client, failing_policy, django_assert_max_num_queries):
    query = settings_query(failing_policy, max_restarts="10")
    admin_client.get(reverse(URL_NAME), query)  # the session's and the user's queries warmed
    for _ in range(3):
        with django_assert_max_num_queries(12):
            assert admin_client.get(reverse(URL_NAME), query).status_code == 200
        start = db_now() - timedelta(hours=1)
        for seconds in range(50):
            fail(failing_policy.node, start + timedelta(seconds=seconds))


def test_the_policy_page_shows_the_panel_only_to_those_who_may_see_failures(
    admin_client, client, django_user_model, failing_policy
):
    url = reverse("admin:supervision_supervisionpolicy_change", args=[failing_policy.pk])
    page = admin_client.get(url).content.decode()
    assert 'class="policy-backtest"' in page and reverse(URL_NAME) in page
    user = django_user_model.objects.create_user("policies-only", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_supervisionpolicy"))
    client.force_login(user)
    assert 'class="policy-backtest"' not in client.get(url).content.decode()


def test_the_add_page_and_the_node_pages_inline_carry_the_panel(admin_client, failing_policy):
    add_page = admin_client.get(reverse("admin:supervision_supervisionpolicy_add")).content.decode()
    assert 'class="policy-backtest"' in add_page and 'data-node=""' in add_page  # the node is chosen on the form
    node_page = admin_client.get(reverse("admin:supervision_supervisionnode_change", args=[failing_policy.node_id]))
    assert f'data-node="{failing_policy.node_id}"' in node_page.content.decode()
