"""The dashboard's page and snapshot through real PostgreSQL and NATS: counts, per-minute rates,
pools, stream health, latest events, permissions, NATS away, and a constant number of queries."""

from __future__ import annotations

import datetime as dt
import json
import socket
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from mistersmith.console.dashboard import selectors
from mistersmith.jetstream import client as console_nats
from mistersmith.live.models import RuntimeProbe
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart

pytestmark = pytest.mark.django_db

PAGE = reverse("dashboard:page")
SNAPSHOT = reverse("dashboard:snapshot")
ALL_PANELS = [
    "panel-attention",
    "panel-agents",
    "panel-nodes",
    "panel-rates",
    "panel-pool",
    "panel-streams",
    "panel-events",
]


def make_user(django_user_model, *perms: str, staff: bool = True):
    user = django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def snapshot(client, parts: str | None = None):
    response = client.get(SNAPSHOT, {"parts": parts} if parts else {})
    assert response.status_code == 200, response.content
    return response.json()


def node(name: str, status: str = "active", **fields) -> SupervisionNode:
    return SupervisionNode.objects.create(
        node_id=name, node_type="Service", node_type_detail="db", status=status, **fields
    )


def db_minute() -> dt.datetime:
    """The start of the database's current minute (now() is fixed for the test's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT date_trunc('minute', now())")
        return cursor.fetchone()[0]


def publish(subject: str, payload: dict) -> int:
    return console_nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


# --- counts ----------------------------------------------------------------------------------------


def test_counts_have_every_state_with_zeros(admin_client):
    for status, how_many in {"Running": 3, "Paused": 1, "Error": 2}.items():
        Agent.objects.bulk_create([Agent(name=f"{status}-{i}", status=status) for i in range(how_many)])
    for name, status in [("n1", "active"), ("n2", "active"), ("n3", "failed")]:
        node(name, status)
    data = snapshot(admin_client, "agents,nodes")
    assert data["agents"]["counts"] == {
        "Created": 0,
        "Starting": 0,
        "Running": 3,
        "Paused": 1,
        "Idle": 0,
        "Processing": 0,
        "Stopping": 0,
        "Terminated": 0,
        "Error": 2,
    }
    assert list(data["agents"]["counts"]) == list(selectors.AgentState.values)  # the lifecycle's order
    assert data["nodes"]["counts"] == {"active": 2, "inactive": 0, "failed": 1, "terminated": 0}
    assert set(data) >= {"positions", "generated_at"} and "streams" not in data  # only the parts asked for


# --- rates -----------------------------------------------------------------------------------------


def test_failures_and_restarts_land_in_their_minute(admin_client):
    target = node("rated")
    minute = db_minute()
    first = minute - dt.timedelta(minutes=59)
    failure_times = {
        "current minute": minute,
        "five minutes ago (1)": minute - dt.timedelta(minutes=5, seconds=-10),
        "five minutes ago (2)": minute - dt.timedelta(minutes=5, seconds=-50),
        "first bucket": first,
        "just before the hour": first - dt.timedelta(microseconds=1),
        "two hours ago": minute - dt.timedelta(hours=2),
        "in the future": minute + dt.timedelta(minutes=3),
    }
    failures = [
        SupervisionFailure.objects.create(
            node=target, failure_reason="Crash", failure_detail=label, occurred_at=occurred
        )
        for label, occurred in failure_times.items()
    ]
    for attempt, started in enumerate([minute - dt.timedelta(minutes=1), minute - dt.timedelta(minutes=1)], 1):
        SupervisionRestart.objects.create(
            node=target,
            failure=failures[0],
            restart_attempt_number=attempt,
            restart_delay_ms=100,
            started_at=started,
        )
    rates = snapshot(admin_client, "rates")["rates"]
    assert rates["minutes"] == 60 and dt.datetime.fromisoformat(rates["start"]) == first
    counts = rates["failures"]["counts"]
    assert len(counts) == 60
    assert {index: n for index, n in enumerate(counts) if n} == {0: 1, 54: 2, 59: 1}
    assert rates["failures"]["total"] == 4
    assert {index: n for index, n in enumerate(rates["restarts"]["counts"]) if n} == {58: 2}
    assert rates["restarts"]["total"] == 2


def test_the_rate_query_reads_the_hour_through_the_time_index():
    demo.seed(prefix="dash-plan", nodes=60, failures=30_000, days=7, sessions=0, hive=False)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE supervision_failures")
        cursor.execute("ANALYZE supervision_restarts")
        for table, column, index in (
            ("supervision_failures", "occurred_at", "supervision_failures_time_idx"),
            ("supervision_restarts", "started_at", "supervision_restarts_time_idx"),
        ):
            cursor.execute("EXPLAIN " + selectors.RATE_SQL.format(table=table, column=column), {"minutes": 60})
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert index in plan, plan
            assert "Seq Scan on " + table not in plan, plan


# --- pools -----------------------------------------------------------------------------------------


def test_pool_panel_has_the_console_pool_the_runtimes_answers_and_any_health_report(admin_client):
    RuntimeProbe.objects.create(
        kind="SystemHealth",
        asked_at=timezone.now(),
        answered_at=timezone.now(),
        message="System health check completed",
        data={"healthy": True, "pool_active": 4, "pool_available": 26, "pool_capacity": 30},
    )
    sequence = publish("system.health", {"pool_active": 7, "pool_capacity": 30, "pool_available": 23, "healthy": True})
    publish("system.control", {"PoolStatus": {}})  # a later message on another subject of the stream
    pool = snapshot(admin_client, "pool")["pool"]
    runtime = pool["runtime"]
    assert runtime["figures"] == {"pool_active": 4, "pool_capacity": 30, "pool_available": 26, "healthy": True}
    assert runtime["health"]["state"] == "answered" and runtime["pool_status"]["state"] == "never_asked"
    report = pool["health_report"]  # a system.health publisher, should there be one, is still read
    assert report["sequence"] == sequence
    assert {k: report[k] for k in ("pool_active", "pool_capacity", "pool_available", "healthy")} == {
        "pool_active": 7,
        "pool_capacity": 30,
        "pool_available": 23,
        "healthy": True,
    }
    console = pool["console"]
    assert console["pooled"] is True and console["max"] == 30 and console["min"] == 5
    assert console["in_use"] == console["size"] - console["available"] and console["in_use"] >= 1


def test_pool_status_fills_the_figures_when_system_health_has_none(admin_client):
    RuntimeProbe.objects.create(
        kind="PoolStatus",
        asked_at=timezone.now(),
        answered_at=timezone.now(),
        data={"active_count": 2, "max_capacity": 5, "available_slots": 3, "agents": ["a", "b"]},
    )
    runtime = snapshot(admin_client, "pool")["pool"]["runtime"]
    assert runtime["figures"] == {"pool_active": 2, "pool_capacity": 5, "pool_available": 3, "healthy": None}
    assert runtime["pool_agents"] == 2


def test_a_wrapped_health_report_is_read_too(admin_client):
    body = {"SystemHealth": {"pool_active": 2, "pool_capacity": 30, "pool_available": 28, "healthy": False}}
    publish("system.health", {"message_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "payload": body})
    report = snapshot(admin_client, "pool")["pool"]["health_report"]
    assert (report["pool_active"], report["healthy"]) == (2, False)


# --- streams ---------------------------------------------------------------------------------------


def test_stream_health_has_the_four_streams_their_limits_and_the_console_consumers_lag(admin_client, stopped_bridge):
    agent_id = uuid.uuid4()
    for _ in range(3):
        publish(
            f"agent.{agent_id}.events", {"Heartbeat": {"agent_id": str(agent_id), "timestamp": "2026-01-01T00:00:00Z"}}
        )
    streams = snapshot(admin_client, "streams")["streams"]["streams"]
    by_name = {stream["name"]: stream for stream in streams}
    assert list(by_name) == ["AGENT_EVENTS", "SYSTEM_EVENTS", "SUPERVISION_EVENTS", "DISCOVERIES"]
    agents = by_name["AGENT_EVENTS"]
    assert agents["limits"] == {"max_msgs": 1_000_000, "max_bytes": 1024**3, "max_age_seconds": 86400}
    assert agents["messages"] >= 3 and agents["consumer_count"] >= 1
    assert agents["used_percent"]["msgs"] == round(100 * agents["messages"] / 1_000_000, 1)
    assert by_name["DISCOVERIES"]["limits"] == {"max_msgs": 1000, "max_bytes": None, "max_age_seconds": None}
    assert by_name["SUPERVISION_EVENTS"]["limits"]["max_msgs"] is None
    consumers = {c["name"]: c for c in agents["consumers"]}
    assert consumers[stopped_bridge] == {"name": stopped_bridge, "exists": True, "pending": 3, "ack_pending": 0}
    prefix = stopped_bridge.removesuffix("-agents")
    assert by_name["SYSTEM_EVENTS"]["consumers"] == [
        {"name": f"{prefix}-control", "exists": False, "pending": None, "ack_pending": None}
    ]


# --- latest events ---------------------------------------------------------------------------------


def test_latest_events_are_the_newest_across_the_streams_for_the_event_log(admin_client):
    agent_id = uuid.uuid4()
    first = publish(f"agent.{agent_id}.events", {"Output": {"agent_id": str(agent_id), "content": "<b>hi</b>"}})
    second = publish("supervision.error.high.db", {"detail": "disk full"})
    events = snapshot(admin_client, "events")["events"]
    assert events["raw"] is True
    newest = events["items"][:2]
    assert [(e["stream"], e["sequence"]) for e in newest] == [("SUPERVISION_EVENTS", second), ("AGENT_EVENTS", first)]
    assert json.loads(newest[1]["text"]) == {"Output": {"agent_id": str(agent_id), "content": "<b>hi</b>"}}
    assert events["seen"]["AGENT_EVENTS"] >= first and events["seen"]["SUPERVISION_EVENTS"] == second
    assert len(events["items"]) <= 20


def test_latest_events_are_summaries_without_the_event_log_permission(client, django_user_model):
    client.force_login(make_user(django_user_model, "agents.view_agent"))
    agent_id = uuid.uuid4()
    publish(
        f"agent.{agent_id}.events",
        {"StateChanged": {"agent_id": str(agent_id), "old_state": "Running", "new_state": "Paused"}},
    )
    publish(f"agent.{agent_id}.events", {"Heartbeat": {"agent_id": str(agent_id), "timestamp": "2026-01-01T00:00:00Z"}})
    publish("supervision.error.high.db", {"detail": "not for this user"})
    events = snapshot(client, "events")["events"]
    assert events["raw"] is False
    assert events["items"][0]["text"] == f"StateChanged agent {agent_id} → Paused"
    publish(f"agent.{agent_id}.events", {"Output": {"agent_id": str(agent_id), "content": "x" * 70_000}})
    events = snapshot(client, "events")["events"]
    assert events["items"][0]["text"] == f"large agent event on agent.{agent_id}.events"  # kept only in part
    assert all("excerpt" not in item and "Heartbeat" not in item["text"] for item in events["items"])
    assert all(item["stream"] == "AGENT_EVENTS" for item in events["items"])


# --- permissions -----------------------------------------------------------------------------------


def test_anonymous_users_go_to_the_login_page_and_the_api_answers_401(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    response = client.get(SNAPSHOT)
    assert response.status_code == 401 and response.json()["error"]


def test_non_staff_users_are_refused(client, django_user_model):
    client.force_login(make_user(django_user_model, "agents.view_agent", staff=False))
    response = client.get(PAGE)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    response = client.get(SNAPSHOT)
    assert response.status_code == 403 and response.json()["error"]


def test_staff_without_permissions_see_no_panel(client, django_user_model):
    client.force_login(make_user(django_user_model))
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="dashboard-nothing"' in html
    assert not any(f'id="{panel}"' in html for panel in ALL_PANELS)
    data = snapshot(client)
    assert data["parts"] == [] and "agents" not in data and "events" not in data
    for part in ("agents", "streams", "events"):
        response = client.get(SNAPSHOT, {"parts": part})
        assert response.status_code == 403 and part in response.json()["error"]


def test_each_panel_follows_its_permission(client, django_user_model):
    client.force_login(make_user(django_user_model, "agents.view_agent", "supervision.view_supervisionfailure"))
    html = client.get(PAGE).content.decode()
    shown = {panel for panel in ALL_PANELS if f'id="{panel}"' in html}
    assert shown == {"panel-attention", "panel-agents", "panel-rates", "panel-pool", "panel-events"}
    assert 'id="rate-failures"' in html and 'id="rate-restarts"' not in html
    config = json.loads(html.split('<script id="dashboard-config" type="application/json">')[1].split("</script>")[0])
    assert config["topics"] == ["agents", "system"] and config["eventLog"] is False
    data = snapshot(client)
    assert data["parts"] == ["attention", "agents", "rates", "pool", "events"]
    assert "failures" in data["rates"] and "restarts" not in data["rates"]
    assert client.get(SNAPSHOT, {"parts": "nodes"}).status_code == 403


def test_a_superuser_sees_every_panel_and_topic(admin_client):
    html = admin_client.get(PAGE).content.decode()
    assert all(f'id="{panel}"' in html for panel in ALL_PANELS)
    assert 'id="live-badge"' in html and "mistersmith/dashboard.js" in html


def test_bad_requests(admin_client):
    response = admin_client.get(SNAPSHOT, {"parts": "agents,bogus"})
    assert response.status_code == 400 and "bogus" in response.json()["error"]
    assert admin_client.post(SNAPSHOT).status_code == 405


# --- NATS away -------------------------------------------------------------------------------------


@pytest.fixture
def nats_away(monkeypatch):
    """The console's NATS connection pointed at a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = console_nats.SyncNats(f"nats://127.0.0.1:{port}")
    monkeypatch.setattr(console_nats, "_connection", away)
    yield
    away.close()


def test_nats_away_is_said_in_its_panels_and_the_rest_still_works(admin_client, nats_away):
    Agent.objects.create(name="still-counted", status="Idle")
    data = snapshot(admin_client)
    assert data["agents"]["counts"]["Idle"] == 1
    assert "rates" in data and data["pool"]["console"]["pooled"] is True
    assert data["pool"]["runtime"]["health"]["state"] == "never_asked"  # from PostgreSQL: still shown
    for panel in (data["streams"], data["events"], data["pool"]["health_report"]):
        assert panel["error"].startswith("NATS is unavailable")


# --- queries ---------------------------------------------------------------------------------------


def test_the_snapshot_takes_as_many_queries_whatever_the_data_size(admin_client, django_assert_max_num_queries):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            snapshot(admin_client)
        return len(queries.captured_queries)

    admin_client.get(SNAPSHOT)  # the session and permission caches warm up as for any request
    with django_assert_max_num_queries(12):
        small = count_queries()
    demo.seed(prefix="dash-queries", nodes=300, failures=5_000, days=1, sessions=0, hive=False)
    with django_assert_max_num_queries(12):
        large = count_queries()
    assert small == large


def test_task_allocation_events_are_worded_in_the_latest_events(client, admin_client, django_user_model):
    task = f"task-{uuid.uuid4().hex[:8]}"
    body = {
        "event_type": "Assigned",
        "task_id": task,
        "timestamp": "2026-01-31T13:45:00Z",
        "allocation_details": {
            "requested_capabilities": ["rust"],
            "assigned_agent": "agent-3",
            "rejection_reasons": [],
            "alternative_agents": [],
            "priority": None,
            "estimated_duration_ms": None,
        },
        "coordination_metadata": {
            "workflow_id": None,
            "parent_task_id": None,
            "dependencies": [],
            "coordination_strategy": "Sequential",
        },
    }
    publish("supervision.tasks.allocation.assigned", body)
    raw = next(i for i in snapshot(admin_client, "events")["events"]["items"] if task in i["excerpt"])
    assert raw["text"] == f"Task {task} assigned to agent-3" and raw["summary"] == raw["text"]
    client.force_login(make_user(django_user_model, "supervision.view_supervisionnode"))
    lines = [item["text"] for item in snapshot(client, "events")["events"]["items"]]
    assert f"Task {task} assigned to agent-3" in lines
