"""The tree at a past moment (supervision/past.py, ``?at=``) and the diff of two moments.

Inside one test transaction every trigger stamps the same ``now()``, so the past is made by
moving the recorded versions back in time (``backdate``) and then changing the tree now: the
versions before the change then hold an hour ago, the new ones from now.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from supervision import past
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionNodeHistory, SupervisionPolicy
from supervision.views import moments
from tests.supervision.test_tree import group_of, names, node

pytestmark = pytest.mark.django_db

TREE_URL = "/admin/supervision/tree/"


def backdate(delta: timedelta) -> None:
    """Every recorded version moved ``delta`` into the past."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE supervision_node_history SET valid_from = valid_from - %(d)s, valid_to = valid_to - %(d)s",
            {"d": delta},
        )


def transaction_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


@pytest.fixture
def changed_tree():
    """An hour ago: root > (svc active with a policy of 5, old). Now: svc failed with a policy of 7,
    old deleted, new added; one failure of svc 10 minutes ago."""
    root = node("p-root", node_type="RootSupervisor")
    svc = node("p-svc", root, status="active")
    old = node("p-old", root, status="active")
    SupervisionPolicy.objects.create(
        node=svc,
        supervision_strategy="OneForOne",
        max_restarts=5,
        time_window_seconds=3600,
        backoff_strategy="Fixed",
        min_restart_delay_ms=100,
        max_restart_delay_ms=1000,
    )
    backdate(timedelta(hours=1))
    now = transaction_now()
    SupervisionNode.objects.filter(pk=svc.pk).update(status="failed")
    SupervisionPolicy.objects.filter(node=svc).update(max_restarts=7)
    old_pk = old.pk
    old.delete()
    old.pk = old_pk  # the node's id, for reading its past
    new = node("p-new", root)
    failure = SupervisionFailure.objects.create(
        node=svc, failure_reason="Crash", failure_detail="exit 137", occurred_at=now - timedelta(minutes=10)
    )
    return {"root": root, "svc": svc, "old": old, "new": new, "failure": failure, "now": now}


# --- Selectors -----------------------------------------------------------------------------------


def test_the_tree_half_an_hour_ago_is_as_it_was(changed_tree):
    at = changed_tree["now"] - timedelta(minutes=30)
    tree = past.top_levels_at(at)
    children = group_of(tree, changed_tree["root"]).nodes
    assert names(children) == ["p-old", "p-svc"]
    svc = children[1]
    assert svc["status"] == "active" and svc["policy"]["max_restarts"] == 5
    assert svc["last_failure_at"] is None  # the failure came later
    root = group_of(tree, None).nodes[0]
    assert root["child_count"] == 2 and root["child_statuses"]["active"] == 2


def test_the_tree_now_through_the_history_is_the_live_one(changed_tree):
    tree = past.top_levels_at(timezone.now())
    children = group_of(tree, changed_tree["root"]).nodes
    assert names(children) == ["p-new", "p-svc"]
    svc = children[1]
    assert (svc["status"], svc["policy"]["max_restarts"], svc["failures_in_window"]) == ("failed", 7, 1)
    assert svc["budget"]["used"] == 1


def test_a_deep_link_and_the_panel_at_a_moment(changed_tree):
    before = changed_tree["now"] - timedelta(minutes=5)
    tree = past.top_levels_at(before, changed_tree["svc"].pk)
    assert tree.selected == str(changed_tree["svc"].pk)
    details = past.node_details_at(before, changed_tree["svc"].pk)
    assert details["node"]["status"] == "active"
    assert [f["failure_detail"] for f in details["failures"]] == ["exit 137"]
    assert past.node_details_at(changed_tree["now"] - timedelta(minutes=30), changed_tree["new"].pk) is None
    path = past.path_to_at(before, changed_tree["old"].pk)
    assert path.selected == str(changed_tree["old"].pk)


def test_children_pages_at_a_moment(changed_tree):
    page = past.children_page_at(changed_tree["now"] - timedelta(minutes=30), changed_tree["root"].pk)
    assert names(page.groups[0].nodes) == ["p-old", "p-svc"]
    page = past.children_page_at(changed_tree["now"] - timedelta(minutes=30), changed_tree["root"].pk, "p-old")
    assert names(page.groups[0].nodes) == ["p-svc"]


def test_the_diff_of_two_moments(changed_tree):
    diff = past.diff_moments(timezone.now(), changed_tree["now"] - timedelta(minutes=30))  # either order
    assert diff.before < diff.after
    changed = {change.after.name: change for change in diff.nodes.changed}
    assert set(changed) == {"p-svc"}
    assert changed["p-svc"].status_changed
    assert [(c.field, c.before, c.after) for c in changed["p-svc"].policy_changes] == [("max_restarts", 5, 7)]
    assert [state.name for _, state in diff.nodes.added] == ["p-new"]
    assert [state.name for _, state in diff.nodes.removed] == ["p-old"]
    assert diff.failure_count == 1 and diff.failures[0]["node_name"] == "p-svc"


def test_known_from_is_the_first_version_or_the_retention_cutoff(changed_tree, settings):
    first = SupervisionNodeHistory.objects.order_by("valid_from").first().valid_from
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "failures": 0}
    assert past.known_from() == first
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "failures": 1}
    backdate(timedelta(days=3))
    assert past.known_from() > timezone.now() - timedelta(days=1, minutes=1)


# --- Views ---------------------------------------------------------------------------------------


def test_the_page_at_a_moment_shows_it_and_turns_live_off(admin_client, changed_tree):
    at = changed_tree["now"] - timedelta(minutes=30)
    response = admin_client.get(TREE_URL, {"at": moments.iso(at), "node": str(changed_tree["svc"].pk)})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<time id="tree-moment" datetime="{moments.iso(at)}">' in html
    assert "Viewing the past" in html and "Back to now" in html
    assert 'id="live-badge"' not in html and 'id="tree-search-input"' not in html
    assert response.context["tree_config"]["at"] == moments.iso(at)
    assert response.context["tree"]["selected"] == str(changed_tree["svc"].pk)


def test_the_page_with_compare_lists_the_changes(admin_client, changed_tree):
    at = changed_tree["now"] - timedelta(minutes=30)
    response = admin_client.get(TREE_URL, {"at": moments.iso(at), "compare": moments.iso(timezone.now())})
    html = response.content.decode()
    assert "What changed from" in html and "active → failed" in html and "max_restarts: 5 → 7" in html
    assert "5 minutes before this failure" in html


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T99:00", "<script>", "3026-01-01T00:00:00Z"])
def test_a_bad_moment_is_a_clear_400_not_a_500(admin_client, value):
    response = admin_client.get(TREE_URL, {"at": value})
    assert response.status_code == 400
    html = response.content.decode()
    assert "errornote" in html and "<script>" not in html
    assert admin_client.get(TREE_URL, {"at": "2026-01-01T00:00:00Z", "compare": value}).status_code == 400
    json = admin_client.get(reverse("supervision:tree_children"), {"at": value})
    assert json.status_code == 400 and json.json()["error"]


def test_a_moment_before_the_history_says_from_when_it_is_known(admin_client, changed_tree):
    response = admin_client.get(TREE_URL, {"at": "2020-01-01T00:00:00Z"})
    assert response.status_code == 200
    assert "history of the tree begins at" in response.content.decode()


def test_the_json_endpoints_answer_for_the_moment(admin_client, changed_tree):
    at = moments.iso(changed_tree["now"] - timedelta(minutes=30))
    svc = changed_tree["svc"].pk
    page = admin_client.get(reverse("supervision:tree_children"), {"parent": str(changed_tree["root"].pk), "at": at})
    assert names(page.json()["groups"][0]["nodes"]) == ["p-old", "p-svc"]
    panel = admin_client.get(reverse("supervision:tree_node", args=[svc]), {"at": at}).json()
    assert panel["node"]["status"] == "active" and panel["links"]["restart"] is None
    assert panel["hidden"]["child_states"].startswith("Child states are not kept")
    assert parse_qs(urlparse(panel["links"]["tree"]).query)["at"] == [at]
    gone = admin_client.get(reverse("supervision:tree_node", args=[changed_tree["new"].pk]), {"at": at})
    assert gone.status_code == 404
    path = admin_client.get(reverse("supervision:tree_path", args=[changed_tree["old"].pk]), {"at": at})
    assert path.json()["selected"] == str(changed_tree["old"].pk)


def test_the_past_hides_what_the_user_may_not_see(client, django_user_model, changed_tree):
    user = django_user_model.objects.create_user("pastviewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_supervisionnode"))
    client.force_login(user)
    at = moments.iso(changed_tree["now"] - timedelta(minutes=30))
    response = client.get(TREE_URL, {"at": at, "compare": moments.iso(timezone.now())})
    html = response.content.decode()
    assert "exit 137" not in html and "Hidden: you may not view" in html
    assert "max_restarts: 5" not in html
    panel = client.get(reverse("supervision:tree_node", args=[changed_tree["svc"].pk]), {"at": at}).json()
    assert panel["failures"] == [] and panel["node"]["policy"] == {"hidden": True}
    client.logout()
    assert client.get(TREE_URL, {"at": at}).status_code == 302  # to the login form


def test_the_first_render_at_a_moment_costs_a_fixed_number_of_queries(admin_client, changed_tree):
    at = moments.iso(changed_tree["now"] - timedelta(minutes=30))
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        admin_client.get(TREE_URL, {"at": at, "node": str(changed_tree["svc"].pk)})
    for i in range(30):
        node(f"p-more-{i:02d}", changed_tree["root"])
    with CaptureQueriesContext(connection) as larger:
        admin_client.get(TREE_URL, {"at": at, "node": str(changed_tree["svc"].pk)})
    assert len(larger) == len(small)


def test_links_five_minutes_before_a_failure(admin_client, changed_tree):
    failure = changed_tree["failure"]
    url = moments.before_failure_url(failure.node_id, failure.occurred_at)
    query = parse_qs(urlparse(url).query)
    assert query["at"] == [moments.iso(failure.occurred_at - timedelta(minutes=5))]
    assert query["node"] == [str(failure.node_id)]
    changelist = admin_client.get(reverse("admin:supervision_supervisionfailure_changelist")).content.decode()
    assert "5 minutes before" in changelist
    change = admin_client.get(reverse("admin:supervision_supervisionfailure_change", args=[failure.pk]))
    assert "5 minutes before this failure" in change.content.decode()


def test_the_attention_panel_links_to_the_tree_before_the_escalations(admin_client, admin_user, changed_tree):
    from mistersmith.console.dashboard.attention import attention

    for _ in range(2):
        SupervisionFailure.objects.create(
            node=changed_tree["svc"],
            failure_reason="Crash",
            failure_detail="escalated",
            escalated_to_parent=True,
            occurred_at=timezone.now() - timedelta(minutes=3),
        )
    found = {item["key"]: item for item in attention(admin_user)["items"]}
    link = found["escalations"]["links"][-1]
    assert link["label"] == "The tree 5 minutes before"
    query = parse_qs(urlparse(link["url"]).query)
    assert set(query) == {"at", "compare"}
    response = admin_client.get(link["url"])
    assert response.status_code == 200 and "What changed from" in response.content.decode()
