"""The dashboard's "needs attention" panel through the real stack (PostgreSQL, the snapshot endpoint):
each item appears when its rows exist, says how many, and links to a list that shows exactly them;
each follows its permission; the whole panel is one statement, bounded, whatever the data size."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from mistersmith.console.dashboard import attention
from mistersmith.live.models import DeadLetter
from supervision.models import SupervisionFailure, SupervisionNode
from tests.console.test_dashboard import make_user, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_bridge_prefix(monkeypatch):
    """A bridge prefix of this test's own (no consumers: no feed is stale unless a test makes one),
    so other checkouts' bridges on the shared NATS are not read."""
    import uuid

    from mistersmith.jetstream.freshness import CACHE

    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", f"test-attention-{uuid.uuid4().hex[:8]}")
    CACHE.clear()
    yield
    CACHE.clear()


def items(client, *, stale: bool = False) -> dict[str, dict]:
    """The panel's items by key; the stale feeds only when asked (the feeds are NATS's, shared by every
    checkout: a bridge prefix without consumers is stale as soon as its streams hold messages)."""
    data = snapshot(client, "attention")
    return {item["key"]: item for item in data["attention"]["items"] if stale or item["key"] != "stale_feeds"}


def ago(**delta) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


def agents_listed(client, url: str) -> int:
    """The live agents list's total for the link's query (what the page shows)."""
    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == reverse("agent_pages:list")
    response = client.get(reverse("agent_pages:list_snapshot"), query)
    assert response.status_code == 200
    return response.json()["total"]


def changelist_count(client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    assert "?e=1" not in response.get("Location", "")
    return response.context["cl"].result_count


@pytest.fixture
def node():
    return SupervisionNode.objects.create(node_id="attention-node", node_type="Service", node_type_detail="svc")


def failures(node, count: int, *, at: dt.datetime, escalated: bool = False) -> None:
    SupervisionFailure.objects.bulk_create(
        SupervisionFailure(
            node=node,
            failure_reason="Crash",
            failure_detail="boom",
            occurred_at=at,
            escalated_to_parent=escalated,
        )
        for _ in range(count)
    )


def test_nothing_to_say_on_a_quiet_installation(admin_client):
    Agent.objects.create(name="fine", status="Running", last_heartbeat=timezone.now())
    assert items(admin_client) == {}


def test_silent_agents_are_counted_and_their_link_lists_them(admin_client, settings):
    settings.MISTERSMITH_SILENT_AGENT_SECONDS = 60
    heard = Agent.objects.create(name="heard", status="Running", last_heartbeat=timezone.now())
    quiet = Agent.objects.create(name="quiet", status="Idle", last_heartbeat=ago(minutes=5))
    never = Agent.objects.create(name="never", status="Processing")
    Agent.objects.filter(pk=never.pk).update(state_changed_at=ago(minutes=10))
    ended = Agent.objects.create(name="ended", status="Terminated", last_heartbeat=ago(hours=1))
    item = items(admin_client)["silent_agents"]
    assert item["count"] == 2 and "silent for more than 60 s" in item["text"]
    assert agents_listed(admin_client, item["links"][0]["url"]) == 2
    listed = admin_client.get(reverse("agent_pages:list_snapshot"), {"silent": "1"}).json()["agents"]
    assert {row["name"] for row in listed} == {"quiet", "never"}
    assert all(row["silent"] for row in listed)
    every = {
        row["name"]: row["silent"] for row in admin_client.get(reverse("agent_pages:list_snapshot")).json()["agents"]
    }
    assert every == {"heard": False, "quiet": True, "never": True, "ended": False}
    # a heartbeat ends the silence
    Agent.objects.filter(pk=quiet.pk).update(last_heartbeat=Now())
    assert items(admin_client)["silent_agents"]["count"] == 1
    assert heard and ended


def test_agents_entering_error_are_counted_with_the_list_of_error_agents(admin_client):
    Agent.objects.create(name="old-error", status="Error")
    Agent.objects.filter(name="old-error").update(state_changed_at=ago(hours=2))
    for n in range(3):
        Agent.objects.create(name=f"new-error-{n}", status="Error")
    item = items(admin_client)["error_agents"]
    assert item["count"] == 3 and item["total"] == 4
    assert item["text"] == "3 agents entered Error in the last 10 min (4 in Error now)"
    assert agents_listed(admin_client, item["links"][0]["url"]) == 4


def test_a_rising_failure_rate_is_said_and_links_to_the_failures_counted(admin_client, node):
    failures(node, 2, at=ago(minutes=15))  # the window before
    failures(node, 4, at=ago(minutes=3))
    assert "failure_rate" not in items(admin_client)  # 4 is under the minimum of 5
    failures(node, 3, at=ago(minutes=2))
    item = items(admin_client)["failure_rate"]
    assert item["count"] == 7 and item["previous"] == 2
    assert item["text"] == "Failures rising: 7 failures in the last 10 min, 2 in the 10 min before"
    assert changelist_count(admin_client, item["links"][0]["url"]) == 7
    failures(node, 5, at=ago(minutes=14))  # 7 is not twice 7: no longer rising
    assert "failure_rate" not in items(admin_client)


def test_the_window_is_a_setting(admin_client, node, settings):
    settings.MISTERSMITH_ATTENTION_WINDOW_MINUTES = 30
    failures(node, 6, at=ago(minutes=25))
    item = items(admin_client)["failure_rate"]
    assert item["count"] == 6 and "last 30 min" in item["text"]


def test_failed_nodes_escalations_and_dead_letters_link_to_what_they_count(admin_client, node):
    SupervisionNode.objects.create(node_id="down-1", node_type="Service", node_type_detail="x", status="failed")
    SupervisionNode.objects.create(node_id="down-2", node_type="Service", node_type_detail="x", status="failed")
    failures(node, 2, at=ago(minutes=30), escalated=True)
    failures(node, 1, at=ago(hours=3), escalated=True)  # older than the hour
    DeadLetter.objects.create(stream="AGENT_EVENTS", subject="agent.x.events", reason="invalid", error="bad")
    found = items(admin_client)
    nodes = found["failed_nodes"]
    assert nodes["count"] == 2
    assert [link["label"] for link in nodes["links"]] == ["Show them", "In the tree"]
    assert changelist_count(admin_client, nodes["links"][0]["url"]) == 2
    tree = admin_client.get(nodes["links"][1]["url"])
    assert tree.status_code == 200 and "down-1" in tree.content.decode()
    escalations = found["escalations"]
    assert escalations["count"] == 2
    assert changelist_count(admin_client, escalations["links"][0]["url"]) == 2
    letters = found["dead_letters"]
    assert letters["count"] == 1
    assert changelist_count(admin_client, letters["links"][0]["url"]) == 1


def test_a_stale_feed_is_said_with_a_link_to_the_state_page(admin_client, stopped_bridge, settings):
    from mistersmith.jetstream import client as console_nats
    from mistersmith.jetstream.freshness import CACHE

    settings.MISTERSMITH_STALE_SECONDS = 0
    console_nats.connection().publish(f"agent.{'0' * 8}-0000-4000-8000-{'0' * 12}.events", {"x": 1})
    CACHE.clear()
    item = items(admin_client, stale=True)["stale_feeds"]
    assert "agents" in item["text"] and item["links"][0]["url"] == reverse("verify_state:page")


def test_items_follow_their_permissions(client, django_user_model, node):
    Agent.objects.create(name="e", status="Error")
    SupervisionNode.objects.create(node_id="down", node_type="Service", node_type_detail="x", status="failed")
    failures(node, 1, at=ago(minutes=5), escalated=True)
    client.force_login(make_user(django_user_model, "agents.view_agent"))
    assert set(items(client)) == {"error_agents"}
    client.force_login(make_user(django_user_model, "supervision.view_supervisionfailure"))
    assert set(items(client)) == {"escalations"}
    client.force_login(make_user(django_user_model, "mistersmith.view_event_log"))
    assert items(client) == {}
    client.force_login(make_user(django_user_model))
    assert client.get(reverse("dashboard:snapshot"), {"parts": "attention"}).status_code == 403


def test_counts_stop_at_the_cap(admin_client, monkeypatch):
    monkeypatch.setattr(attention, "COUNT_CAP", 3)
    Agent.objects.bulk_create(Agent(name=f"e{n}", status="Error") for n in range(5))
    item = items(admin_client)["error_agents"]
    assert item["count"] == 3 and item["capped"] and item["text"].startswith("3+ agents")


def test_the_panel_is_one_statement(admin_client):
    admin_client.get(reverse("dashboard:snapshot"), {"parts": "attention"})
    with CaptureQueriesContext(connection) as queries:
        snapshot(admin_client, "attention")
    counting = [q["sql"] for q in queries.captured_queries if "capped" in q["sql"]]
    assert len(counting) == 1 and counting[0].count("LIMIT") == 9


def test_nodes_one_failure_from_escalating_link_to_the_tree_filter(admin_client, node, django_user_model):
    from supervision.models import SupervisionPolicy

    root = SupervisionNode.objects.create(node_id="attention-root", node_type="RootSupervisor")
    node.parent = root
    node.save()
    SupervisionPolicy.objects.create(node=node, max_restarts=2, time_window_seconds=3600)
    SupervisionPolicy.objects.create(node=root, max_restarts=5, time_window_seconds=3600)  # far from its limit
    assert "escalation_forecast" not in items(admin_client)
    failures(node, 1, at=ago(minutes=5))
    forecast = items(admin_client)["escalation_forecast"]
    assert forecast["count"] == 1 and "one failure from escalating" in forecast["text"]
    tree = admin_client.get(forecast["links"][0]["url"])
    assert tree.status_code == 200
    assert tree.context["tree"]["matches"] == [str(node.pk)]
    # Without the policy permission the forecast (the policies' figures) is not shown.
    viewer = make_user(django_user_model, "supervision.view_supervisionnode")
    admin_client.force_login(viewer)
    assert "escalation_forecast" not in items(admin_client)
