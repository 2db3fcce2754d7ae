"""The supervision tree: selectors return the right rows in the runtime's order with the right
figures, the endpoints answer only to those allowed, and a page costs the same number of
queries whatever the size of the tree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from mistersmith.simulator import demo
from supervision import selectors
from supervision.models import (
    SupervisionChildState,
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)
from supervision.views.tree import node_tree_url

pytestmark = pytest.mark.django_db

TREE_URL = "/admin/supervision/tree/"
XSS_NAME = "<script>alert(1)</script>"


def seed(prefix: str, nodes: int, failures: int = 0, levels: int = 5) -> dict[str, int]:
    return demo.seed(prefix=prefix, nodes=nodes, levels=levels, failures=failures, hive=False)


def node(name: str, parent: SupervisionNode | None = None, node_type: str = "Service", **fields) -> SupervisionNode:
    """A node of any type, with the agent or type detail its type requires."""
    if node_type == "RootSupervisor":
        fields.setdefault("node_type_detail", None)
    else:
        fields.setdefault("node_type_detail", "detail")
    if node_type in ("Worker", "AgentSupervisor"):
        fields.setdefault("agent", Agent.objects.create(name=f"{name}-agent"))
    return SupervisionNode.objects.create(node_id=name, node_type=node_type, parent=parent, **fields)


def names(nodes: list[dict]) -> list[str]:
    return [n["name"] for n in nodes]


def group_of(tree: selectors.TreeSlice, parent: SupervisionNode | None) -> selectors.Group:
    key = None if parent is None else str(parent.pk)
    return next(group for group in tree.groups if group.parent == key)


def runtime_order(root: SupervisionNode) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT node_name FROM get_supervision_tree(%s)", [root.pk])
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def small_tree() -> dict[str, SupervisionNode]:
    """root > (b, a > (a2, a1 > a1x), C); names chosen so that insertion order is not name order."""
    root = node("t-root", node_type="RootSupervisor")
    b = node("t-b", root)
    a = node("t-a", root, node_type="AgentSupervisor")
    a2 = node("t-a2", a, node_type="Worker", status="failed")
    a1 = node("t-a1", a, node_type="AgentSupervisor")
    a1x = node("t-a1x", a1, node_type="Worker")
    c = node("t-c", root, status="terminated")
    return {"root": root, "a": a, "b": b, "c": c, "a1": a1, "a2": a2, "a1x": a1x}


# --- Selectors -----------------------------------------------------------------------------------


def test_top_levels_are_roots_and_children_in_the_runtime_order(small_tree):
    tree = selectors.top_levels()
    assert [group.parent for group in tree.groups] == [None, str(small_tree["root"].pk)]
    assert names(group_of(tree, None).nodes) == ["t-root"]
    children = group_of(tree, small_tree["root"]).nodes
    assert names(children) == [name for name in runtime_order(small_tree["root"]) if name in {"t-a", "t-b", "t-c"}]
    assert [n["child_count"] for n in children] == [2, 0, 0]
    assert tree.selected is None and tree.open == []


def test_node_json_has_the_figures_of_the_policy_window(small_tree):
    a = small_tree["a"]
    SupervisionPolicy.objects.create(node=a, max_restarts=3, time_window_seconds=60, backoff_strategy="Fixed")
    now = timezone.now()
    for minutes_ago in (0.1, 0.5, 30):  # two in the window, one long before
        SupervisionFailure.objects.create(
            node=a, failure_reason="Crash", failure_detail="x", occurred_at=now - timedelta(minutes=minutes_ago)
        )
    failure = SupervisionFailure.objects.filter(node=a).first()
    SupervisionRestart.objects.create(node=a, failure=failure, restart_attempt_number=1, restart_delay_ms=100)
    SupervisionChildState.objects.create(node=a, child_id="t-a1", child_node=small_tree["a1"], state="Running")
    SupervisionChildState.objects.create(node=a, child_id="t-a2", child_node=small_tree["a2"], state="Failed")

    data = next(n for n in group_of(selectors.top_levels(), small_tree["root"]).nodes if n["name"] == "t-a")

    assert data["failures_in_window"] == 2
    assert data["restart_allowed"] is True
    assert data["restarts"] == 1 and data["restarts_capped"] is False
    assert data["last_failure_at"] == max(f.occurred_at for f in SupervisionFailure.objects.filter(node=a)).isoformat()
    assert data["child_states"] == {"Starting": 0, "Running": 1, "Failed": 1, "Stopped": 0}
    assert data["agent"]["name"] == "t-a-agent"
    assert data["policy"]["strategy"] == "OneForOne"
    assert (data["policy"]["max_restarts"], data["policy"]["window_seconds"], data["policy"]["backoff"]) == (
        3,
        60,
        "Fixed",
    )


def test_a_nodes_child_summary_adds_up_to_the_children_listed(small_tree):
    """The summary counts the same set the tree lists when the node is opened (its child nodes),
    by status; the runtime's child-state rows are a separate figure, not mixed into it."""
    root, a = small_tree["root"], small_tree["a"]
    node("t-d", root, status="failed")
    SupervisionChildState.objects.create(node=root, child_id="instance-7", state="Running")  # not a node
    SupervisionChildState.objects.create(node=a, child_id="t-a2", child_node=small_tree["a2"], state="Failed")

    for parent in (root, a):
        summary = selectors.nodes_for_refresh([parent.pk])[0]
        listed = selectors.children_page(parent.pk).groups[0].nodes
        by_status = {
            status: sum(1 for child in listed if child["status"] == status) for status in summary["child_statuses"]
        }
        assert summary["child_statuses"] == by_status
        assert sum(summary["child_statuses"].values()) == summary["child_count"] == len(listed)

    root_summary = selectors.nodes_for_refresh([root.pk])[0]
    assert root_summary["child_statuses"] == {"active": 0, "inactive": 2, "failed": 1, "terminated": 1}
    assert root_summary["child_states"] == {"Starting": 0, "Running": 1, "Failed": 0, "Stopped": 0}


def test_restart_limit_follows_should_restart(small_tree):
    a = small_tree["a"]
    SupervisionPolicy.objects.create(node=a, max_restarts=2, time_window_seconds=60)
    for _ in range(2):
        SupervisionFailure.objects.create(node=a, failure_reason="Crash", failure_detail="x")
    data = selectors.node_details(a.pk)["node"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT should_restart(%s)", [a.pk])
        assert data["restart_allowed"] is cursor.fetchone()[0] is False
    assert data["failures_in_window"] == 2


def test_a_node_without_policy_has_no_window(small_tree):
    data = selectors.node_details(small_tree["b"].pk)["node"]
    assert data["policy"] is None
    assert data["failures_in_window"] is None
    assert data["restart_allowed"] is False


def test_children_come_in_pages_by_name(small_tree):
    parent = small_tree["b"]
    SupervisionNode.objects.bulk_create(
        SupervisionNode(node_id=f"t-b-{i:03d}", node_type="Service", node_type_detail="x", parent=parent)
        for i in range(selectors.PAGE_SIZE + 5)
    )
    first = selectors.children_page(parent.pk).groups[0]
    assert first.parent == str(parent.pk)
    assert len(first.nodes) == selectors.PAGE_SIZE and first.has_more
    assert names(first.nodes) == sorted(names(first.nodes))
    rest = selectors.children_page(parent.pk, after=first.nodes[-1]["name"]).groups[0]
    assert names(rest.nodes) == [f"t-b-{i:03d}" for i in range(selectors.PAGE_SIZE, selectors.PAGE_SIZE + 5)]
    assert not rest.has_more


def test_roots_page_and_empty_children(small_tree):
    assert names(selectors.children_page(None).groups[0].nodes) == ["t-root"]
    leaf = selectors.children_page(small_tree["c"].pk).groups[0]
    assert leaf.parent == str(small_tree["c"].pk) and leaf.nodes == [] and not leaf.has_more


def test_deep_link_opens_the_path(small_tree):
    target = small_tree["a1x"]
    tree = selectors.top_levels(deep_link=target.pk)
    assert tree.selected == str(target.pk)
    assert tree.open == [str(small_tree[k].pk) for k in ("root", "a", "a1")]
    assert names(group_of(tree, small_tree["a"]).nodes) == ["t-a1", "t-a2"]
    assert names(group_of(tree, small_tree["a1"]).nodes) == ["t-a1x"]
    parents = [group.parent for group in tree.groups]
    assert parents.index(str(small_tree["a"].pk)) < parents.index(str(small_tree["a1"].pk))


def test_path_past_a_page_is_pinned(small_tree):
    parent = small_tree["b"]
    SupervisionNode.objects.bulk_create(
        SupervisionNode(node_id=f"t-b-{i:03d}", node_type="Service", node_type_detail="x", parent=parent)
        for i in range(selectors.PAGE_SIZE + 20)
    )
    far = SupervisionNode.objects.get(node_id=f"t-b-{selectors.PAGE_SIZE + 10:03d}")
    tree = selectors.path_to(far.pk)
    group = group_of(tree, parent)
    assert len(group.nodes) == selectors.PAGE_SIZE and group.has_more
    assert names(group.pinned) == [far.node_id]
    # The row just past the page is pinned only when it is on the path.
    just_past = SupervisionNode.objects.get(node_id=f"t-b-{selectors.PAGE_SIZE:03d}")
    assert names(group_of(selectors.path_to(just_past.pk), parent).pinned) == [just_past.node_id]


def test_scope_shows_one_subtree(small_tree):
    tree = selectors.top_levels(scope=small_tree["a"].pk)
    assert tree.groups[0].parent is None
    assert names(tree.groups[0].nodes) == ["t-a"]
    assert names(tree.groups[1].nodes) == ["t-a1", "t-a2"]
    linked = selectors.top_levels(scope=small_tree["a"].pk, deep_link=small_tree["a1x"].pk)
    assert names(linked.groups[0].nodes) == ["t-a"]
    assert linked.open == [str(small_tree["a"].pk), str(small_tree["a1"].pk)]
    elsewhere = selectors.top_levels(scope=small_tree["a"].pk, deep_link=small_tree["c"].pk)
    assert names(elsewhere.groups[0].nodes) == ["t-root"] and elsewhere.selected == str(small_tree["c"].pk)
    unknown = selectors.top_levels(scope="00000000-0000-0000-0000-000000000001")
    assert names(unknown.groups[0].nodes) == ["t-root"]


def test_filter_shows_matches_with_their_ancestors(small_tree):
    tree = selectors.filtered_tree(status="failed")
    assert tree.matches == [str(small_tree["a2"].pk)]
    assert names(group_of(tree, None).nodes) == ["t-root"]
    assert names(group_of(tree, small_tree["root"]).nodes) == ["t-a"]
    assert names(group_of(tree, small_tree["a"]).nodes) == ["t-a2"]
    assert all(group.filtered for group in tree.groups)
    assert tree.open == [str(small_tree["root"].pk), str(small_tree["a"].pk)]
    assert not tree.truncated
    workers = selectors.filtered_tree(node_type="Worker")
    assert set(workers.matches) == {str(small_tree["a2"].pk), str(small_tree["a1x"].pk)}
    assert selectors.filtered_tree(status="failed", node_type="Service").matches == []


def test_filter_is_bounded():
    seed("tfb", nodes=selectors.FILTER_LIMIT + 60, levels=3)
    tree = selectors.filtered_tree(node_type="Worker")
    assert tree.truncated
    assert len(tree.matches) == selectors.FILTER_LIMIT


def test_search_is_case_insensitive_prefix_first_with_paths(small_tree):
    results = selectors.search_nodes("T-A1")
    assert [r["name"] for r in results] == ["t-a1", "t-a1x"]
    assert results[1]["path"] == ["t-root", "t-a", "t-a1", "t-a1x"]
    node("x-t-a1-other", small_tree["c"].parent)
    assert [r["name"] for r in selectors.search_nodes("t-a1")][-1] == "x-t-a1-other"
    assert [r["name"] for r in selectors.search_nodes("a1", node_type="Worker")] == ["t-a1x"]
    assert selectors.search_nodes("   ") == []


def test_search_treats_wildcards_as_text(small_tree):
    node("t-100%_done", small_tree["root"])
    assert [r["name"] for r in selectors.search_nodes("%_")] == ["t-100%_done"]
    assert selectors.search_nodes("t_a") == []


def test_search_is_limited():
    seed("tsl", nodes=60, levels=3)
    assert len(selectors.search_nodes("tsl-")) == selectors.SEARCH_LIMIT


def test_panel_details_history_is_latest_ten(small_tree):
    a = small_tree["a"]
    now = timezone.now()
    for i in range(12):
        SupervisionFailure.objects.create(
            node=a, failure_reason="Crash", failure_detail=f"f{i}", occurred_at=now - timedelta(minutes=i)
        )
        SupervisionRestart.objects.create(
            node=a, restart_attempt_number=i + 1, restart_delay_ms=100, started_at=now - timedelta(minutes=i)
        )
    SupervisionChildState.objects.create(node=a, child_id="ok", state="Running")
    SupervisionChildState.objects.create(node=a, child_id="zz-broken", state="Failed")
    details = selectors.node_details(a.pk)
    assert [f["failure_detail"] for f in details["failures"]] == [f"f{i}" for i in range(10)]
    assert [r["restart_attempt_number"] for r in details["restarts"]] == list(range(1, 11))
    assert [c["child_id"] for c in details["child_states"]] == ["zz-broken", "ok"]
    assert selectors.node_details("00000000-0000-0000-0000-000000000001") is None


# --- Views: access -------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="staff-pass-123", is_staff=True)
    client.force_login(user)
    client.user = user
    return client


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="supervision", codename__in=codenames))


def endpoints(small_tree) -> list[str]:
    pk = small_tree["a"].pk
    return [
        TREE_URL,
        reverse("supervision:tree_children") + f"?parent={pk}",
        reverse("supervision:tree_search") + "?q=t-a",
        reverse("supervision:tree_path", args=[pk]),
        reverse("supervision:tree_node", args=[pk]),
    ]


def test_urls():
    assert reverse("supervision:tree") == TREE_URL
    pk = "0b7e8b1a-0000-4000-8000-000000000000"
    assert node_tree_url(pk) == f"{TREE_URL}?node={pk}"


def test_everything_answers_a_superuser(admin_client, small_tree):
    for url in endpoints(small_tree):
        assert admin_client.get(url).status_code == 200, url


def test_anonymous_is_sent_to_login(client, small_tree):
    for url in endpoints(small_tree):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_staff_without_view_permission_is_refused(staff_client, small_tree):
    for url in endpoints(small_tree):
        assert staff_client.get(url).status_code == 403, url


def test_staff_with_view_permission_sees_no_restart_link(staff_client, small_tree):
    grant(staff_client.user, "view_supervisionnode")
    for url in endpoints(small_tree):
        assert staff_client.get(url).status_code == 200, url
    links = staff_client.get(reverse("supervision:tree_node", args=[small_tree["a"].pk])).json()["links"]
    assert links["restart"] is None
    assert links["policy"] is None and links["failures"] is None
    assert links["change"] == reverse("admin:supervision_supervisionnode_change", args=[small_tree["a"].pk])


def test_restart_link_needs_the_restart_permission(staff_client, small_tree):
    grant(staff_client.user, "view_supervisionnode", "restart_node", "add_supervisionpolicy")
    pk = small_tree["a"].pk
    links = staff_client.get(reverse("supervision:tree_node", args=[pk])).json()["links"]
    assert links["restart"].startswith(reverse("supervision:restart", args=[pk]) + "?next=")
    assert links["policy"] == reverse("admin:supervision_supervisionpolicy_add") + f"?node={pk}"


def test_policy_link_goes_to_the_policy(admin_client, small_tree):
    policy = SupervisionPolicy.objects.create(node=small_tree["a"])
    links = admin_client.get(reverse("supervision:tree_node", args=[small_tree["a"].pk])).json()["links"]
    assert links["policy"] == reverse("admin:supervision_supervisionpolicy_change", args=[policy.pk])


def test_post_is_not_allowed(admin_client):
    assert admin_client.post(TREE_URL).status_code == 405


# --- Views: behaviour ----------------------------------------------------------------------------


def test_page_is_an_admin_page(admin_client, small_tree):
    response = admin_client.get(TREE_URL)
    assert response.status_code == 200
    assert "admin/base_site.html" in [t.name for t in response.templates]
    assert response.context["site_header"] == "MisterSmith console"
    assert response.context["available_apps"]  # the admin's sidebar
    content = response.content.decode()
    assert 'role="tree"' in content and "supervision/tree.js" in content


def test_page_is_a_live_page_on_the_live_base_like_the_others(admin_client, small_tree):
    response = admin_client.get(TREE_URL)
    assert "mistersmith/live_base.html" in [t.name for t in response.templates]
    content = response.content.decode()
    # What live_base gives every live page, once: live.css, the connection badge, the freshness badge.
    assert content.count("mistersmith/live.css") == 1 and content.count('id="live-badge"') == 1
    assert content.count("mistersmith/freshness.js") == 1 and 'data-feeds="supervision control"' in content
    assert 'id="content-main" class="live-page"' in content


def test_deep_link_page(admin_client, small_tree):
    target = small_tree["a1x"]
    tree = admin_client.get(TREE_URL, {"node": str(target.pk)}).context["tree"]
    assert tree["selected"] == str(target.pk)
    assert tree["open"] == [str(small_tree[k].pk) for k in ("root", "a", "a1")]


def test_unknown_deep_link_shows_the_whole_tree(admin_client, small_tree):
    for value in ("not-a-uuid", "00000000-0000-0000-0000-000000000001"):
        response = admin_client.get(TREE_URL, {"node": value})
        assert response.status_code == 200
        assert response.context["node_not_found"]
        assert response.context["tree"]["selected"] is None


def test_filter_page(admin_client, small_tree):
    response = admin_client.get(TREE_URL, {"status": "failed", "type": "Worker"})
    assert response.context["tree"]["matches"] == [str(small_tree["a2"].pk)]
    assert response.context["filters"] == {"status": "failed", "type": "Worker"}
    ignored = admin_client.get(TREE_URL, {"status": "bogus"})
    assert ignored.context["filters"] == {} and ignored.context["tree"]["matches"] == []


def test_search_endpoint_uses_filters(admin_client, small_tree):
    def found(**params) -> list[str]:
        return [r["name"] for r in admin_client.get(reverse("supervision:tree_search"), params).json()["results"]]

    assert found(q="t-a") == ["t-a", "t-a1", "t-a1x", "t-a2"]
    assert found(q="t-a", status="failed") == ["t-a2"]


def test_bad_input_is_refused(admin_client):
    assert admin_client.get(reverse("supervision:tree_children"), {"parent": "nope"}).status_code == 400
    missing = "00000000-0000-0000-0000-000000000001"
    assert admin_client.get(reverse("supervision:tree_path", args=[missing])).status_code == 404
    assert admin_client.get(reverse("supervision:tree_node", args=[missing])).status_code == 404


def test_names_are_escaped_in_the_page(admin_client, small_tree):
    evil = node(XSS_NAME, small_tree["root"])
    content = admin_client.get(TREE_URL).content.decode()
    assert XSS_NAME not in content
    assert "\\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E" in content
    search = admin_client.get(reverse("supervision:tree_search"), {"q": "<script>"})
    assert search["Content-Type"] == "application/json"
    assert search.json()["results"][0]["id"] == str(evil.pk)


# --- Constant query counts -----------------------------------------------------------------------

# The admin's own session and user lookups are two of these.
PAGE_QUERIES = 4  # session, user, the path's ancestors, the nodes
EXPAND_QUERIES = 3  # session, user, the nodes
PANEL_QUERIES = 6  # session, user, node, failures, restarts, child states


@pytest.mark.parametrize(("prefix", "size"), [("tq1", 40), ("tq2", 400)])
def test_queries_do_not_grow_with_the_tree(admin_client, django_assert_max_num_queries, prefix, size):
    seed(prefix, nodes=size, failures=size * 5)
    root = SupervisionNode.objects.get(node_id=f"{prefix}-root")
    deep = SupervisionNode.objects.filter(node_id__startswith=f"{prefix}-worker").order_by("node_id").last()
    parent = deep.parent
    with django_assert_max_num_queries(PAGE_QUERIES):
        assert admin_client.get(TREE_URL, {"node": str(deep.pk)}).status_code == 200
    with django_assert_max_num_queries(PAGE_QUERIES - 1):
        assert admin_client.get(TREE_URL, {"root": str(root.pk)}).status_code == 200
    with django_assert_max_num_queries(EXPAND_QUERIES):
        response = admin_client.get(reverse("supervision:tree_children"), {"parent": str(parent.pk)})
        assert response.json()["groups"][0]["nodes"]
    with django_assert_max_num_queries(EXPAND_QUERIES):
        assert admin_client.get(reverse("supervision:tree_search"), {"q": "worker"}).json()["results"]
    with django_assert_max_num_queries(PAGE_QUERIES):
        assert admin_client.get(reverse("supervision:tree_path", args=[deep.pk])).status_code == 200
    with django_assert_max_num_queries(PAGE_QUERIES):
        assert admin_client.get(TREE_URL, {"status": "failed"}).status_code == 200
    with django_assert_max_num_queries(PANEL_QUERIES):
        assert admin_client.get(reverse("supervision:tree_node", args=[parent.pk])).status_code == 200


def test_first_render_is_bounded_with_many_roots_and_children(admin_client):
    roots = SupervisionNode.objects.bulk_create(
        SupervisionNode(node_id=f"tb-root-{i:03d}", node_type="RootSupervisor") for i in range(selectors.PAGE_SIZE + 3)
    )
    SupervisionNode.objects.bulk_create(
        SupervisionNode(node_id=f"tb-child-{i:03d}", node_type="Service", node_type_detail="x", parent=roots[0])
        for i in range(selectors.PAGE_SIZE + 3)
    )
    tree = admin_client.get(TREE_URL).context["tree"]
    top = tree["groups"][0]
    assert len(top["nodes"]) == selectors.PAGE_SIZE and top["has_more"]
    assert len(tree["groups"][1]["nodes"]) == selectors.PAGE_SIZE and tree["groups"][1]["has_more"]
    assert len(tree["groups"]) == 1 + 1  # only the first roots with children are opened; others are leaves here


def test_live_refresh_endpoint_answers_named_nodes_and_agents_nodes_in_constant_queries(
    admin_client, django_assert_max_num_queries
):
    from agents.models import Agent
    from supervision.models import SupervisionNode

    root = SupervisionNode.objects.create(node_id="rf-root", node_type="RootSupervisor")
    agent = Agent.objects.create(name="rf-agent")
    worker = SupervisionNode.objects.create(
        node_id="rf-w", node_type="Worker", node_type_detail="w", parent=root, agent=agent
    )
    url = reverse("supervision:tree_nodes")
    with django_assert_max_num_queries(8):
        answer = admin_client.get(url, {"ids": str(root.pk), "agents": str(agent.pk)}).json()
    assert {n["id"] for n in answer["nodes"]} == {str(root.pk), str(worker.pk)}
    assert isinstance(answer["positions"], dict)
    bad = admin_client.get(url, {"ids": "not-a-uuid"})
    assert bad.status_code == 400 and "UUID" in bad.json()["error"]
    too_many = admin_client.get(url, {"ids": ",".join(str(root.pk) for _ in range(501))})
    assert too_many.status_code == 400
