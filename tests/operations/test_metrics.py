"""/metrics through the real stack: access rules, the pool lines, the console's metrics with real
values from PostgreSQL, NATS and the live sockets, and a scrape that survives NATS being away."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import yaml
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from mistersmith.asgi import application
from mistersmith.jetstream import client as nats
from mistersmith.live import metrics as live_metrics
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import DeadLetter
from mistersmith.operations.metrics import figures as metrics
from mistersmith.operations.metrics.view import address_allowed, parse_networks
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart
from tests.conftest import delete_bridge_consumers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
DOCS = Path(__file__).resolve().parents[2] / "docs"
Samples = dict[tuple[str, frozenset], float]


def scrape(client: Client | None = None, **headers: str) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def root_node() -> SupervisionNode:
    return SupervisionNode.objects.create(node_id=f"root-{uuid.uuid4().hex[:8]}", node_type="RootSupervisor")


def test_loopback_scrape_shows_the_pool_lines():
    samples = scrape()
    assert value(samples, "db_pool_max", alias="default") == settings.DATABASE_POOL["max_size"]
    assert value(samples, "db_pool_min", alias="default") == settings.DATABASE_POOL["min_size"]
    size = value(samples, "db_pool_size", alias="default")
    available = value(samples, "db_pool_available", alias="default")
    assert size is not None and available is not None and 0 <= available <= size <= settings.DATABASE_POOL["max_size"]
    assert value(samples, "db_pool_requests_waiting", alias="default") == 0
    assert value(samples, "db_pool_requests_total", alias="default") >= 1
    assert ("db_pool_connections_errors_total", frozenset({("alias", "default")})) in samples
    # django-prometheus' own lines: its middleware and its engine under Django's psycopg pool.
    assert {"django_http_requests_before_middlewares_total", "django_db_execute_total"} <= names(samples)
    assert value(samples, "mistersmith_up", component="postgresql") == 1
    assert value(samples, "mistersmith_up", component="nats") == 1


def test_restart_budgets_are_aggregate_gauges():
    from supervision.models import SupervisionPolicy

    before = scrape()
    root = root_node()
    worker = SupervisionNode.objects.create(
        node_id=f"budget-{uuid.uuid4().hex[:8]}", node_type="Service", node_type_detail="svc", parent=root
    )
    SupervisionPolicy.objects.create(node=worker, max_restarts=2, time_window_seconds=600)
    SupervisionFailure.objects.create(node=worker, failure_reason="Crash", failure_detail="x")
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mistersmith_nodes_one_failure_from_escalation") == 1
    assert grew("mistersmith_restart_budget_nodes", state="last_slot") == 1
    assert grew("mistersmith_restart_budget_nodes", state="no_policy") == 1  # the root
    assert grew("mistersmith_restart_budget_nodes", state="exhausted") == 0
    # No per-node series: the budget families carry the state label only.
    assert {labels for name, labels in after if name == "mistersmith_restart_budget_nodes"} == {
        frozenset({("state", state)}) for state in ("exhausted", "last_slot", "ok", "no_policy")
    }


def test_restarts_failures_and_table_sizes_come_from_postgresql():
    before = scrape()
    node = root_node()
    failure = SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="boom")
    SupervisionRestart.objects.create(
        node=node,
        failure=failure,
        restart_attempt_number=1,
        restart_delay_ms=100,
        command_sequence=7,
        completed_at=timezone.now(),
        success=True,
    )
    # The runtime's own restart (no command sequence), still pending.
    SupervisionRestart.objects.create(node=node, restart_attempt_number=2, restart_delay_ms=200)
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("mistersmith_supervision_restarts_recent", outcome="succeeded", origin="console") == 1
    assert grew("mistersmith_supervision_restarts_recent", outcome="pending", origin="runtime") == 1
    assert grew("mistersmith_supervision_restarts_recent", outcome="failed", origin="console") == 0
    assert grew("mistersmith_supervision_failures_recent", reason="Crash") == 1
    assert grew("mistersmith_supervision_failures_recent", reason="HeartbeatTimeout") == 0
    labels = {"component": "supervision", "table": "supervision_restarts"}
    assert grew("mistersmith_table_rows", **labels) == 2
    assert value(after, "mistersmith_table_rows_exact", **labels) == 1
    assert value(after, "mistersmith_table_bytes", **labels) > 0
    assert value(after, "mistersmith_table_rows", component="discoveries", table="agents_discovery") is not None
    assert value(after, "mistersmith_discoveries_capacity") == 1000
    assert value(after, "mistersmith_metrics_window_seconds") == settings.METRICS_WINDOW_SECONDS


def test_dead_letters_are_counted_by_stream_and_reason():
    reason = f"test_{uuid.uuid4().hex[:6]}"
    for _ in range(2):
        DeadLetter.record(
            stream="DISCOVERIES", subject="discoveries.x", sequence=1, reason=reason, error="e", data=b"x"
        )
    samples = scrape()
    assert value(samples, "mistersmith_bridge_dead_letters", stream="DISCOVERIES", reason=reason) == 2
    assert value(samples, "mistersmith_bridge_dead_letters_recent", stream="DISCOVERIES", reason=reason) == 2


def test_streams_are_measured():
    samples = scrape()
    for stream in ("AGENT_EVENTS", "SYSTEM_EVENTS", "SUPERVISION_EVENTS", "DISCOVERIES"):
        assert value(samples, "mistersmith_stream_exists", stream=stream) == 1
        assert value(samples, "mistersmith_stream_messages", stream=stream) is not None
        assert value(samples, "mistersmith_stream_bytes", stream=stream) is not None
    assert value(samples, "mistersmith_stream_max_messages", stream="AGENT_EVENTS") == 1_000_000
    assert value(samples, "mistersmith_stream_max_bytes", stream="SYSTEM_EVENTS") == 512 * 1024 * 1024
    assert value(samples, "mistersmith_stream_max_messages", stream="SUPERVISION_EVENTS") is None  # no limit


def test_hive_files_are_measured(settings, tmp_path):
    settings.HIVE_DB_PATH = tmp_path / "hive.db"
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "memory.db"
    samples = scrape()
    assert value(samples, "mistersmith_hive_file_present", database="hive") == 0
    # No hive files at all: an installation without claude-flow, not a component that is down.
    assert value(samples, "mistersmith_up", component="hive") is None

    database = sqlite3.connect(settings.HIVE_DB_PATH)
    try:
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("CREATE TABLE swarms (id TEXT PRIMARY KEY, name TEXT)")
        database.execute("INSERT INTO swarms VALUES ('swarm-1', 'x')")
        database.commit()
        samples = scrape()
    finally:
        database.close()
    assert value(samples, "mistersmith_hive_file_present", database="hive") == 1
    assert value(samples, "mistersmith_hive_file_present", database="hive_memory") == 0
    assert value(samples, "mistersmith_hive_file_bytes", database="hive", file="main") > 0
    assert value(samples, "mistersmith_hive_file_bytes", database="hive", file="wal") > 0
    assert value(samples, "mistersmith_up", component="hive") == 1


def test_bridge_lag_and_the_in_process_bridge_counters(nats_url, monkeypatch):
    prefix = f"test-metrics-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", prefix)
    agents = {"consumer": f"{prefix}-agents", "stream": "AGENT_EVENTS", "feed": "agents"}
    bridge = BridgeThread(consumer_prefix=prefix, url=nats_url)
    bridge.start()
    try:
        assert bridge.ready.wait(20)
        nats.connection().publish("discoveries.x.insights", b"\xff not json", msg_id=uuid.uuid4().hex)
        wait_until(lambda: bridge.stats.rejected["not_json"] >= 1, what="the bridge refused the message")
        samples = scrape()
        assert value(samples, "mistersmith_bridge_running", bridge=prefix) == 1
        assert value(samples, "mistersmith_bridge_events_rejected_total", bridge=prefix, reason="not_json") >= 1
        assert value(samples, "mistersmith_bridge_dead_letters", stream="DISCOVERIES", reason="not_json") >= 1
        assert value(samples, "mistersmith_bridge_consumer_exists", **agents) == 1
        bridge.stop()
        agent_id = uuid.uuid4()
        for _ in range(3):  # while no bridge runs: they wait in the durable consumer
            payload = {"Heartbeat": {"agent_id": str(agent_id), "timestamp": timezone.now().isoformat()}}
            nats.connection().publish(f"agent.{agent_id}.events", payload, msg_id=uuid.uuid4().hex)
        samples = scrape()
        assert value(samples, "mistersmith_bridge_consumer_pending", **agents) >= 3
        assert value(samples, "mistersmith_bridge_running", bridge=prefix) is None
    finally:
        bridge.stop()
        connections.close_all()
        delete_bridge_consumers(prefix)


async def test_an_open_live_socket_counts_in_the_gauge():
    from django.contrib.auth import get_user_model

    @database_sync_to_async  # closes the thread's connection after, like a request
    def staff_cookie() -> bytes:
        user = get_user_model().objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=True)
        client = Client()
        client.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()

    @database_sync_to_async
    def sockets() -> float:
        return value(scrape(), "mistersmith_live_sockets_open")

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", await staff_cookie())]
    before = await sockets()
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert await sockets() == before + 1
    await communicator.disconnect()
    assert await sockets() == before
    refused = WebsocketCommunicator(application, "/ws/live/", headers=headers[:2])  # anonymous: never counted
    assert not (await refused.connect())[0]
    assert await sockets() == before


def test_a_scrape_with_nats_unreachable_still_answers(monkeypatch):
    # The console's NATS address, pointed at a port nothing listens on (nats_url() is cached
    # per process, so the lookup itself is replaced rather than the setting).
    monkeypatch.setattr(nats, "nats_url", lambda: "nats://127.0.0.1:1")
    started = time.perf_counter()
    samples = scrape()
    elapsed = time.perf_counter() - started
    assert value(samples, "mistersmith_up", component="nats") == 0
    assert value(samples, "mistersmith_up", component="postgresql") == 1
    assert value(samples, "db_pool_max", alias="default") is not None
    assert "mistersmith_stream_messages" not in names(samples)
    assert elapsed < 3 * settings.METRICS_NATS_TIMEOUT + 2


# --- Access ---------------------------------------------------------------------------------------


def test_another_address_is_refused():
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 404
    assert Client(REMOTE_ADDR="2001:db8::1").get("/metrics").status_code == 404


def test_loopback_through_a_proxy_is_refused():
    assert Client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404


def test_an_allowed_network_may_scrape(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client().get("/metrics").status_code == 404  # loopback no longer listed


def test_the_token_lets_a_scraper_in_from_anywhere(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_NETWORKS = []
    outside = Client(REMOTE_ADDR="203.0.113.9")
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert outside.get("/metrics").status_code == 404
    assert Client().get("/metrics").status_code == 404  # no network allowed at all: token only


def test_a_token_sent_when_none_is_configured_is_refused():
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_only_get_and_head():
    assert Client().post("/metrics").status_code == 405


def test_network_matching():
    networks = parse_networks(("127.0.0.0/8", "::1/128", "10.0.0.0/8"))
    assert address_allowed("127.0.0.1", networks)
    assert address_allowed("::1", networks)
    assert address_allowed("::ffff:10.2.3.4", networks)
    assert not address_allowed("11.0.0.1", networks)
    assert not address_allowed("not an address", networks)
    assert not address_allowed(None, networks)
    with pytest.raises(ImproperlyConfigured):
        parse_networks(("10.0.0.0/33",))


# --- The dashboard and the alert rules -------------------------------------------------------------

METRIC_NAME = re.compile(r"\b((?:db_pool|mistersmith)_[a-z_]+)")


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `((?:db_pool|mistersmith)_[a-z_]+)`", (DOCS / "metrics.md").read_text(), re.M))


def test_docs_list_every_exported_metric():
    documented = documented_metrics()
    exported = {n for n in names(scrape()) if METRIC_NAME.fullmatch(n)}
    exported -= {n for n in exported if n.endswith("_created")}
    assert exported - documented == set(), "exported but not in docs/metrics.md"
    source = Path(metrics.__file__).read_text() + Path(live_metrics.__file__).read_text()  # the live gauges
    defined = set(re.findall(r'"((?:db_pool|mistersmith)_[a-z_]+)"', source))
    assert {name.removesuffix("_total") for name in documented} <= defined, "documented but never defined"


def test_grafana_dashboard_is_valid_and_uses_known_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"] and dashboard["schemaVersion"] >= 16
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert expressions
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert used and used <= documented_metrics(), used - documented_metrics()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_rules_are_valid_and_cover_the_failure_modes():
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
    used = {name for rule in alerts for name in METRIC_NAME.findall(rule["expr"])}
    assert used <= documented_metrics(), used - documented_metrics()
    names_ = {rule["alert"] for rule in alerts}
    for wanted in ("BridgeLag", "DatabasePoolSaturated", "DatabasePoolWaiting", "RestartStorm", "StreamNearByteLimit"):
        assert wanted in names_
