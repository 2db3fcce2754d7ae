"""The dashboard's charts with history (dashboard:charts) through real PostgreSQL: buckets of known
failures and restarts per window, empty buckets as zeros, window validation, permissions, and the
plan reading the window through the time indexes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from mistersmith.console.dashboard import history
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart
from tests.console.test_dashboard import make_user

pytestmark = pytest.mark.django_db

CHARTS = reverse("dashboard:charts")
VIEW_FAILURE = "supervision.view_supervisionfailure"
VIEW_RESTART = "supervision.view_supervisionrestart"


def charts(client, window: str | None = None) -> dict:
    response = client.get(CHARTS, {"window": window} if window else {})
    assert response.status_code == 200, response.content
    return response.json()


def index_of(data: dict, at: dt.datetime) -> int | None:
    """The bucket ``at`` falls in, computed from the answer's own bounds (None: outside the window)."""
    start = dt.datetime.fromisoformat(data["start"])
    end = dt.datetime.fromisoformat(data["end"])
    if not start <= at < end:
        return None
    return int((at - start).total_seconds()) // data["step_seconds"]


def non_zero(counts: list[int]) -> dict[int, int]:
    return {i: n for i, n in enumerate(counts) if n}


@pytest.fixture
def nodes():
    return {
        "Worker": SupervisionNode.objects.create(
            node_id="chart-worker", node_type="Worker", node_type_detail="w", agent=Agent.objects.create(name="cw")
        ),
        "Service": SupervisionNode.objects.create(node_id="chart-db", node_type="Service", node_type_detail="db"),
    }


@pytest.mark.parametrize(
    ("window", "buckets", "step"), [("1h", 60, 60), ("6h", 72, 300), ("24h", 96, 900), ("7d", 168, 3600)]
)
def test_each_window_has_its_buckets_aligned_to_their_width(admin_client, window, buckets, step):
    data = charts(admin_client, window)
    assert data["window"] == window and data["step_seconds"] == step
    assert len(data["buckets"]) == buckets
    assert all(b % step == 0 for b in data["buckets"])
    assert [b - a for a, b in zip(data["buckets"], data["buckets"][1:], strict=False)] == [step] * (buckets - 1)
    end = dt.datetime.fromisoformat(data["end"])
    assert end - dt.timedelta(seconds=step) <= timezone.now() < end  # the last bucket holds now
    for family in (data["failures"]["by_node_type"], data["failures"]["by_reason"], data["restarts"]["by_outcome"]):
        assert all(counts == [0] * buckets for counts in family.values())
    assert set(data["failures"]["by_node_type"]) == {"RootSupervisor", "AgentSupervisor", "Worker", "Service"}
    assert set(data["restarts"]["by_outcome"]) == {"succeeded", "failed", "timed_out", "pending"}


def test_known_failures_land_in_their_bucket_by_node_type_and_reason(admin_client, nodes):
    window = history.WINDOWS["6h"]
    start, end = history.bounds(window)
    times = {
        "first bucket": (start, "Worker", "Crash"),
        "first bucket, later": (start + dt.timedelta(minutes=4, seconds=59), "Service", "Crash"),
        "second bucket": (start + dt.timedelta(minutes=5), "Service", "HeartbeatTimeout"),
        "two hours in": (start + dt.timedelta(hours=2, minutes=1), "Worker", "ExternalFailure"),
        "two hours in, again": (start + dt.timedelta(hours=2, minutes=2), "Worker", "Crash"),
        "just before": (start - dt.timedelta(microseconds=1), "Worker", "Crash"),
        "an hour ahead": (end + dt.timedelta(hours=1), "Service", "Crash"),
    }
    for label, (at, node_type, reason) in times.items():
        SupervisionFailure.objects.create(
            node=nodes[node_type], failure_reason=reason, failure_detail=label, occurred_at=at
        )
    data = charts(admin_client, "6h")
    expected_type: dict[str, dict[int, int]] = {}
    expected_reason: dict[str, dict[int, int]] = {}
    for at, node_type, reason in times.values():
        i = index_of(data, at)
        if i is not None:
            expected_type.setdefault(node_type, {}).setdefault(i, 0)
            expected_type[node_type][i] += 1
            expected_reason.setdefault(reason, {}).setdefault(i, 0)
            expected_reason[reason][i] += 1
    failures = data["failures"]
    assert {k: non_zero(v) for k, v in failures["by_node_type"].items() if any(v)} == expected_type
    assert {k: non_zero(v) for k, v in failures["by_reason"].items() if any(v)} == expected_reason
    assert failures["total"] == 5
    # The known layout, when the request stayed in the bounds computed above (it nearly always does).
    if dt.datetime.fromisoformat(data["start"]) == start:
        assert expected_type == {"Worker": {0: 1, 24: 2}, "Service": {0: 1, 1: 1}}


def test_restart_outcomes_are_counted_by_start_time(admin_client, nodes):
    window = history.WINDOWS["24h"]
    start, _ = history.bounds(window)
    at = start + dt.timedelta(hours=3, minutes=7)
    done = at + dt.timedelta(seconds=2)
    rows = [
        {"completed_at": done, "success": True},
        {"completed_at": done, "success": True},
        {"completed_at": done, "success": False, "error_message": "boom"},
        {"completed_at": done, "success": False, "error_message": "Timed out: no RestartCompleted within 10500 ms"},
        {},  # pending
    ]
    for attempt, fields in enumerate(rows, 1):
        SupervisionRestart.objects.create(
            node=nodes["Service"], restart_attempt_number=attempt, restart_delay_ms=100, started_at=at, **fields
        )
    data = charts(admin_client, "24h")
    i = index_of(data, at)
    assert {k: non_zero(v) for k, v in data["restarts"]["by_outcome"].items()} == {
        "succeeded": {i: 2},
        "failed": {i: 1},
        "timed_out": {i: 1},
        "pending": {i: 1},
    }
    assert data["restarts"]["total"] == 5


def test_the_default_window_and_unknown_windows(admin_client):
    assert charts(admin_client)["window"] == history.DEFAULT_WINDOW
    for bad in ("2h", "1H", "7d;drop", "0"):
        response = admin_client.get(CHARTS, {"window": bad})
        assert response.status_code == 400
        assert response.json()["error"] == f"Unknown window {bad!r}; choose one of 1h, 6h, 24h, 7d."


def test_permissions(client, django_user_model):
    assert client.get(CHARTS).status_code == 401
    client.force_login(make_user(django_user_model, VIEW_FAILURE, VIEW_RESTART, staff=False))
    assert client.get(CHARTS).status_code == 403
    client.force_login(make_user(django_user_model))
    response = client.get(CHARTS)
    assert response.status_code == 403 and response.json()["error"] == "You may not see failures or restarts."
    client.force_login(make_user(django_user_model, VIEW_FAILURE))
    data = charts(client, "1h")
    assert "failures" in data and "restarts" not in data
    client.force_login(make_user(django_user_model, VIEW_RESTART))
    data = charts(client, "1h")
    assert "restarts" in data and "failures" not in data
    assert client.post(CHARTS).status_code == 405


def test_the_page_has_the_window_links_only_for_users_who_see_the_rates(client, django_user_model):
    client.force_login(make_user(django_user_model, VIEW_RESTART))
    page = client.get(reverse("dashboard:page")).content.decode()
    assert 'id="panel-history"' in page and 'href="?window=7d"' in page
    assert 'id="history-restarts"' in page and 'id="history-failures-type"' not in page
    assert "vendor/uplot/uPlot.iife.min.js" in page
    client.force_login(make_user(django_user_model, "agents.view_agent"))
    page = client.get(reverse("dashboard:page")).content.decode()
    assert "panel-history" not in page and "uPlot" not in page


def test_the_queries_read_the_window_through_the_time_indexes(nodes):
    """Enough old rows that a sequential scan would lose: the plan must use the time indexes."""
    with connection.cursor() as cursor:
        for table, column, extra_columns, extra_values in (
            ("supervision_failures", "occurred_at", "failure_reason, failure_detail", "'Crash', 'old'"),
            ("supervision_restarts", "started_at", "restart_attempt_number, restart_delay_ms", "1, 0"),
        ):
            cursor.execute(
                f"INSERT INTO {table} (id, node_id, {column}, {extra_columns}) "
                f"SELECT gen_random_uuid(), %s, now() - interval '30 days' - g * interval '1 second', {extra_values} "
                "FROM generate_series(1, 20000) g",
                [nodes["Worker"].pk],
            )
        cursor.execute("ANALYZE supervision_failures")
        cursor.execute("ANALYZE supervision_restarts")
        window = history.WINDOWS["1h"]
        start, end = history.bounds(window)
        params = {"start": start, "last": end - window.step, "end": end, "step": window.step}
        for sql, table, index in (
            (history.FAILURES_SQL, "supervision_failures", "supervision_failures_time_idx"),
            (
                history.RESTARTS_SQL.format(outcome=history.RESTART_OUTCOME_SQL),
                "supervision_restarts",
                "supervision_restarts_time_idx",
            ),
        ):
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert index in plan, plan
            assert "Seq Scan on " + table not in plan, plan


def test_settled_buckets_are_kept_and_the_newest_read_again(admin_client, nodes):
    """After one request, a late row in a settled bucket shows only once the kept counts are gone;
    a row in the current bucket shows at once (it is read again on every request)."""
    charts(admin_client, "6h")
    data_before = charts(admin_client, "6h")
    now = timezone.now()
    settled_at = now - dt.timedelta(hours=2)
    for at in (settled_at, now):
        SupervisionFailure.objects.create(
            node=nodes["Service"], failure_reason="Crash", failure_detail="x", occurred_at=at
        )
    data = charts(admin_client, "6h")
    newest = index_of(data, now)
    assert non_zero(data["failures"]["by_reason"]["Crash"]) == {newest: 1}
    assert data_before["failures"]["total"] == 0
    caches[history.CACHE].clear()
    data = charts(admin_client, "6h")
    assert non_zero(data["failures"]["by_reason"]["Crash"]) == {index_of(data, settled_at): 1, newest: 1}


def test_a_warm_request_reads_only_the_unsettled_buckets(admin_client, nodes, monkeypatch):
    reads: list[tuple[str, dt.timedelta]] = []
    read = history._read

    def recorded(family, step, start, end):
        reads.append((family.name, end - start))
        return read(family, step, start, end)

    monkeypatch.setattr(history, "_read", recorded)
    charts(admin_client, "7d")
    assert reads == [("failures", dt.timedelta(days=7)), ("restarts", dt.timedelta(days=7))]  # cold: all of it
    reads.clear()
    with CaptureQueriesContext(connection) as queries:
        charts(admin_client, "7d")
    # Warm: failures settle 5 minutes after their hour, restarts an hour after theirs.
    assert [name for name, _ in reads] == ["failures", "restarts"]
    assert reads[0][1] <= dt.timedelta(hours=2) and reads[1][1] <= dt.timedelta(hours=3), reads
    assert len([q for q in queries.captured_queries if "generate_series" in q["sql"]]) == 2
