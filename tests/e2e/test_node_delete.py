"""Deleting a node with a subtree in a real browser: the cascade is shown, a wrong typed name
deletes nothing, the right one deletes the subtree and the history records every node."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import DELETION, LogEntry

from supervision.models import SupervisionFailure, SupervisionNode

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def service(name: str, parent: SupervisionNode | None = None) -> SupervisionNode:
    return SupervisionNode.objects.create(node_id=name, node_type="Service", node_type_detail="x", parent=parent)


def test_deleting_a_subtree_needs_the_typed_name(logged_in_page, live_server, admin_user):
    root = service("e2d-root")
    middle = service("e2d-middle", root)
    service("e2d-leaf-1", middle)
    service("e2d-leaf-2", middle)
    SupervisionFailure.objects.create(node=middle, failure_reason="Crash", failure_detail="boom")
    page = logged_in_page

    page.goto(f"{live_server.url}/admin/supervision/supervisionnode/{root.pk}/change/")
    page.click("a.deletelink")
    page.wait_for_selector("#delete-cascade")
    assert page.inner_text("td.count-nodes") == "4"
    assert page.inner_text("td.count-descendants") == "3"
    assert page.inner_text("td.count-failures") == "1"
    assert page.locator("#deleted-descendants li").all_inner_texts() == ["e2d-leaf-1", "e2d-leaf-2", "e2d-middle"]

    page.fill(f"#confirm-{root.pk}", "e2d-middle")
    page.click("input[type=submit].default")
    page.wait_for_selector("#delete-errors")
    assert "is not the name of the node “e2d-root”" in page.inner_text("#delete-errors")
    assert SupervisionNode.objects.filter(node_id__startswith="e2d").count() == 4

    page.fill(f"#confirm-{root.pk}", "e2d-root")
    page.click("input[type=submit].default")
    page.wait_for_selector("ul.messagelist li.success")
    assert "e2d-root" in page.inner_text("ul.messagelist")
    assert not SupervisionNode.objects.filter(node_id__startswith="e2d").exists()
    logged = LogEntry.objects.filter(user=admin_user, action_flag=DELETION).values_list("object_repr", flat=True)
    assert sorted(logged) == ["e2d-leaf-1", "e2d-leaf-2", "e2d-middle", "e2d-root"]
