"""Deleting a node shows the whole cascade the database will follow, asks for the node's name
when a subtree goes with it, deletes nothing on a wrong name, and logs every node deleted."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import DELETION, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import Agent
from supervision.models import (
    SupervisionChildState,
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:supervision_supervisionnode_changelist"


def service(name: str, parent: SupervisionNode | None = None) -> SupervisionNode:
    return SupervisionNode.objects.create(node_id=name, node_type="Service", node_type_detail="x", parent=parent)


@pytest.fixture
def subtree() -> dict[str, SupervisionNode]:
    """keep > (doomed > (d-a, d-b > d-b1), kept-sibling); history on the doomed nodes."""
    keep = service("keep")
    doomed = service("doomed", keep)
    a = service("d-a", doomed)
    b = service("d-b", doomed)
    b1 = service("d-b1", b)
    sibling = service("kept-sibling", keep)
    for node in (doomed, b1):
        SupervisionPolicy.objects.create(node=node)
    for node in (doomed, a, b1):
        failure = SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="boom")
        SupervisionRestart.objects.create(node=node, failure=failure, restart_attempt_number=1, restart_delay_ms=10)
    SupervisionChildState.objects.create(node=doomed, child_id="d-a", child_node=a, state="Running")
    SupervisionChildState.objects.create(node=b, child_id="d-b1", child_node=b1, state="Failed")
    # A child state of a kept node pointing at a doomed one: unlinked by the database, not deleted.
    SupervisionChildState.objects.create(node=keep, child_id="doomed", child_node=doomed, state="Running")
    SupervisionFailure.objects.create(node=sibling, failure_reason="Crash", failure_detail="stays")
    return {"keep": keep, "doomed": doomed, "a": a, "b": b, "b1": b1, "sibling": sibling}


def delete_url(node: SupervisionNode) -> str:
    return reverse("admin:supervision_supervisionnode_delete", args=[node.pk])


def cascade_figures(response) -> dict[str, int]:
    summary = response.context["cascade"]
    return {
        "nodes": summary.nodes,
        "descendants": summary.descendants,
        "policies": summary.policies,
        "failures": summary.failures,
        "restarts": summary.restarts,
        "child_states": summary.child_states,
    }


def deletion_logs(user) -> dict[str, str]:
    entries = LogEntry.objects.filter(user=user, action_flag=DELETION)
    return {entry.object_repr: entry.object_id for entry in entries}


def test_the_delete_page_lists_the_whole_cascade(admin_client, subtree):
    response = admin_client.get(delete_url(subtree["doomed"]))
    assert response.status_code == 200
    assert cascade_figures(response) == {
        "nodes": 4,
        "descendants": 3,
        "policies": 2,
        "failures": 3,
        "restarts": 3,
        "child_states": 2,
    }
    page = response.content.decode()
    for name in ("d-a", "d-b", "d-b1"):
        assert f"<li>{name}</li>" in page
    assert "kept-sibling" not in page
    assert 'name="confirm-{}"'.format(subtree["doomed"].pk) in page


@pytest.mark.parametrize("typed", [None, "", "d-a", "DOOMED", "doomed-"])
def test_a_missing_or_wrong_name_deletes_nothing(admin_client, admin_user, subtree, typed):
    data = {"post": "yes", "expected_nodes": "4"}
    if typed is not None:
        data[f"confirm-{subtree['doomed'].pk}"] = typed
    response = admin_client.post(delete_url(subtree["doomed"]), data)
    assert response.status_code == 200
    errors = " ".join(response.context["errors"])
    assert ("type its name" in errors) if not typed else (f"“{typed}” is not the name" in errors)
    assert SupervisionNode.objects.count() == 6
    assert SupervisionFailure.objects.count() == 4
    assert not deletion_logs(admin_user)


def test_the_right_name_deletes_the_subtree_and_logs_every_node(admin_client, admin_user, subtree):
    doomed = subtree["doomed"]
    response = admin_client.post(
        delete_url(doomed), {"post": "yes", "expected_nodes": "4", f"confirm-{doomed.pk}": " doomed "}
    )
    assert response.status_code == 302
    assert set(SupervisionNode.objects.values_list("node_id", flat=True)) == {"keep", "kept-sibling"}
    assert list(SupervisionFailure.objects.values_list("failure_detail", flat=True)) == ["stays"]
    assert not SupervisionPolicy.objects.exists() and not SupervisionRestart.objects.exists()
    kept_state = SupervisionChildState.objects.get()
    assert (kept_state.child_id, kept_state.child_node_id) == ("doomed", None)
    expected = {name: str(subtree[key].pk) for key, name in [("doomed", "doomed"), ("a", "d-a"), ("b", "d-b")]}
    expected["d-b1"] = str(subtree["b1"].pk)
    assert deletion_logs(admin_user) == expected


def test_a_leaf_needs_no_typed_name(admin_client, admin_user, subtree):
    response = admin_client.post(delete_url(subtree["a"]), {"post": "yes", "expected_nodes": "1"})
    assert response.status_code == 302
    assert not SupervisionNode.objects.filter(pk=subtree["a"].pk).exists()
    assert deletion_logs(admin_user) == {"d-a": str(subtree["a"].pk)}


def test_a_subtree_grown_since_the_page_was_shown_is_not_deleted(admin_client, admin_user, subtree):
    doomed = subtree["doomed"]
    service("d-late", subtree["b1"])  # added by the runtime after the page showed 4 nodes
    response = admin_client.post(
        delete_url(doomed), {"post": "yes", "expected_nodes": "4", f"confirm-{doomed.pk}": "doomed"}
    )
    assert response.status_code == 200
    assert "5 now, 4 then" in " ".join(response.context["errors"])
    assert SupervisionNode.objects.count() == 7
    assert not deletion_logs(admin_user)


def test_a_user_who_may_not_delete_the_history_cannot_delete_the_node(client, django_user_model, subtree):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("nodes-only", password="x-pass-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_supervisionnode", "delete_supervisionnode"])
    )
    client.force_login(user)
    page = client.get(delete_url(subtree["doomed"]))
    assert page.status_code == 200 and "supervision failures" in page.context["perms_lacking"]
    doomed = subtree["doomed"]
    response = client.post(delete_url(doomed), {"post": "yes", "expected_nodes": "4", f"confirm-{doomed.pk}": "doomed"})
    assert response.status_code == 403
    assert SupervisionNode.objects.count() == 6


def test_the_bulk_action_replaces_delete_selected(admin_client, subtree):
    page = admin_client.get(reverse(CHANGELIST))
    actions = [value for value, _ in page.context["action_form"].fields["action"].choices]
    assert "delete_subtrees" in actions and "delete_selected" not in actions


def bulk(client, nodes, **extra):
    data = {"action": "delete_subtrees", ACTION_CHECKBOX_NAME: [str(n.pk) for n in nodes], **extra}
    return client.post(reverse(CHANGELIST), data)


def test_the_bulk_action_lists_the_cascade_and_asks_a_name_per_subtree(admin_client, admin_user, subtree):
    page = bulk(admin_client, [subtree["doomed"], subtree["sibling"], subtree["b"]])
    assert page.status_code == 200
    figures = cascade_figures(page)
    assert (figures["nodes"], figures["descendants"], figures["failures"]) == (5, 2, 4)
    needs_name = {root.node.node_id for root in page.context["cascade"].roots if root.needs_typed_name}
    assert needs_name == {"doomed", "d-b"}

    wrong = bulk(
        admin_client,
        [subtree["doomed"], subtree["sibling"], subtree["b"]],
        post="yes",
        expected_nodes="5",
        **{f"confirm-{subtree['doomed'].pk}": "doomed", f"confirm-{subtree['b'].pk}": "d-b1"},
    )
    assert wrong.status_code == 200 and "“d-b1” is not the name" in " ".join(wrong.context["errors"])
    assert SupervisionNode.objects.count() == 6 and not deletion_logs(admin_user)

    right = bulk(
        admin_client,
        [subtree["doomed"], subtree["sibling"], subtree["b"]],
        post="yes",
        expected_nodes="5",
        **{f"confirm-{subtree['doomed'].pk}": "doomed", f"confirm-{subtree['b'].pk}": "d-b"},
    )
    assert right.status_code == 302
    assert list(SupervisionNode.objects.values_list("node_id", flat=True)) == ["keep"]
    assert set(deletion_logs(admin_user)) == {"doomed", "d-a", "d-b", "d-b1", "kept-sibling"}


def big_subtree(prefix: str, children: int, grandchildren: int) -> SupervisionNode:
    """A root with ``children`` times ``grandchildren`` below it, inserted by SQL as the runtime would."""
    root = service(f"{prefix}-root")
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO supervision_nodes (node_id, node_type, node_type_detail, parent_node_id)
               SELECT %s || '-' || i, 'Service'::node_type, 'x', %s FROM generate_series(1, %s) i""",
            [prefix, root.pk, children],
        )
        cursor.execute(
            """INSERT INTO supervision_nodes (node_id, node_type, node_type_detail, parent_node_id)
               SELECT m.node_id || '-' || j, 'Service'::node_type, 'x', m.id
               FROM supervision_nodes m CROSS JOIN generate_series(1, %s) j WHERE m.parent_node_id = %s""",
            [grandchildren, root.pk],
        )
    return root


def test_the_delete_page_costs_the_same_queries_for_10_or_10000_nodes(admin_client, admin_user):
    small = big_subtree("small", 3, 3)
    large = big_subtree("large", 100, 99)
    counts = []
    for root in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(delete_url(root))
        counts.append(len(queries))
        assert response.status_code == 200
    assert counts[0] == counts[1]
    summary = response.context["cascade"]
    assert (summary.nodes, summary.descendants, len(summary.first_descendants)) == (10_001, 10_000, 20)
    assert summary.more_descendants == 9_980 and "and 9980 more" in response.content.decode()

    response = admin_client.post(
        delete_url(large), {"post": "yes", "expected_nodes": "10001", f"confirm-{large.pk}": "large-root"}
    )
    assert response.status_code == 302
    assert LogEntry.objects.filter(user=admin_user, action_flag=DELETION).count() == 10_001
    assert not SupervisionNode.objects.filter(node_id__startswith="large").exists()
    assert SupervisionNode.objects.filter(node_id__startswith="small").count() == 13


def test_an_agent_of_a_deleted_node_is_kept_and_unlinked(admin_client):
    agent = Agent.objects.create(name="worker-agent")
    root = service("ag-root")
    worker = SupervisionNode.objects.create(
        node_id="ag-worker", node_type="Worker", node_type_detail="w", parent=root, agent=agent
    )
    Agent.objects.filter(pk=agent.pk).update(supervision_node=worker)
    response = admin_client.post(
        delete_url(root), {"post": "yes", "expected_nodes": "2", f"confirm-{root.pk}": "ag-root"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.supervision_node_id is None
