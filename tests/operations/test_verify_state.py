"""The state verification matrix through the real stack: PostgreSQL, NATS JetStream, SQLite hive
files, the ASGI socket and the channel layer. Faults are caused for real (a closed port, a
missing or changed stream, a dropped constraint, a dead process), never mocked."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agents.models import Agent, AgentInstance, InteractiveSession
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.streams import STREAMS
from mistersmith.live.bridge import FEEDS
from mistersmith.operations.verify import report as verify
from mistersmith.operations.verify.matrix import COMPONENTS, DEGRADED, FAILED, OK, Report, Row
from tests.conftest import delete_bridge_consumers
from tests.hive.sqlite_files import alias_on_file, write_sqlite

pytestmark = pytest.mark.django_db

HIVE_SQL = """
PRAGMA journal_mode=WAL;
CREATE TABLE swarms (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE agents (id TEXT PRIMARY KEY, swarm_id TEXT, name TEXT NOT NULL, type TEXT NOT NULL, role TEXT);
INSERT INTO swarms VALUES ('swarm-1', 'verify');
INSERT INTO agents VALUES ('queen-1', 'swarm-1', 'Queen', 'coordinator', 'queen');
INSERT INTO agents VALUES ('worker-1', 'swarm-1', 'Coder', 'coder', 'worker');
"""
MEMORY_SQL = """
PRAGMA journal_mode=WAL;
CREATE TABLE memory_entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL,
    namespace TEXT NOT NULL DEFAULT 'default', UNIQUE(key, namespace));
INSERT INTO memory_entries (key, value) VALUES ('k', 'v');
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rows_of(report: Report, component: str) -> list[Row]:
    return [row for row in report.rows if row.component == component]


def row_named(report: Report, component: str, check: str) -> Row:
    (row,) = [row for row in rows_of(report, component) if row.check == check]
    return row


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def hive_files(tmp_path: Path):
    """The hive aliases on real claude-flow-like files in WAL mode, with a queen and a worker."""
    hive = write_sqlite(tmp_path / "hive.db", HIVE_SQL)
    memory = write_sqlite(tmp_path / "memory.db", MEMORY_SQL)
    with alias_on_file("hive", hive), alias_on_file("hive_memory", memory):
        yield hive, memory


@pytest.fixture
def bridge_consumers(nats_url, monkeypatch):
    """The bridge's four durable consumers under a prefix of this test's own (as the bridge makes them)."""
    prefix = f"test-verify-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MISTERSMITH_BRIDGE_PREFIX", prefix)
    client = nats.connection()
    js = client.client().jetstream()  # connecting creates any missing contract stream
    for feed in FEEDS:
        # from the streams' end, as the bridge starts: what earlier runs left there is no lag of ours
        config = ConsumerConfig(
            durable_name=feed.consumer_name(prefix), ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW
        )
        client.run(js.add_consumer(feed.stream, config))
    yield prefix
    delete_bridge_consumers(prefix)


@pytest.fixture
def healthy(hive_files, bridge_consumers):
    """Everything a report needs to be free of failures."""
    return bridge_consumers


# --- The report --------------------------------------------------------------------------------


def test_a_healthy_installation_has_no_failed_row_and_covers_every_component(healthy):
    report = verify.run()
    assert [row for row in report.rows if row.status == FAILED] == []
    assert {row.component for row in report.rows} == set(COMPONENTS)
    assert [row.component for row in report.rows] == sorted(
        (row.component for row in report.rows), key=COMPONENTS.index
    )
    assert all(row.status in (OK, DEGRADED) and row.expected and row.found for row in report.rows)
    schema = {row.check: row for row in rows_of(report, "supervision_db")}
    assert {check: row.status for check, row in schema.items()} == dict.fromkeys(
        ["tables", "referenced tables", "enum types", "functions", "constraints", "updated_at triggers", "migrations"],
        OK,
    )
    assert row_named(report, "hive_mind", "queens and workers").found == "1 queen, 1 worker"
    assert row_named(report, "hive_mind", "hive.db WAL mode").status == OK
    consumers = [row for row in rows_of(report, "jetstream") if row.check.startswith("consumer ")]
    assert len(consumers) == len(FEEDS) and all(healthy in row.check and row.status == OK for row in consumers)
    streams = [row for row in rows_of(report, "jetstream") if row.check.startswith("stream ")]
    assert [row.check for row in streams] == [f"stream {name}" for name in STREAMS]
    assert row_named(report, "browser", "socket route").status == OK
    assert row_named(report, "browser", "channel layer round trip").status == OK
    assert report.duration_ms < 5000  # the target is 2 s (bench/verify_state.py); a busy CI machine gets slack


def test_nats_at_a_closed_port_gives_failed_rows_not_a_traceback(healthy):
    with override_settings(NATS_URL=f"nats://127.0.0.1:{closed_port()}"):
        report = verify.run()
    (server,) = rows_of(report, "jetstream")
    assert server.status == FAILED and server.check == "server" and "NATS_URL" in server.hint
    assert report.status == FAILED
    assert row_named(report, "agent_state", "lifecycle states").status == OK  # the rest is still checked
    assert report.duration_ms < 5000  # short NATS timeouts: not the shared connection's 5 s per call


def test_a_missing_stream_fails_and_a_changed_one_is_degraded(nats_url, healthy):
    tag = uuid.uuid4().hex[:8]
    missing = dataclasses.replace(STREAMS["DISCOVERIES"], name=f"T{tag}_MISSING", subjects=[f"t{tag}.missing.>"])
    changed = dataclasses.replace(STREAMS["DISCOVERIES"], name=f"T{tag}_CHANGED", subjects=[f"t{tag}.changed.>"])
    client = nats.connection()
    js = client.client().jetstream()
    client.run(js.add_stream(dataclasses.replace(changed, max_msgs=5)))
    try:
        report = verify.run(streams={missing.name: missing, changed.name: changed})
    finally:
        client.run(js.delete_stream(changed.name))
    gone = row_named(report, "jetstream", f"stream {missing.name}")
    assert (gone.status, gone.found) == (FAILED, "missing") and "ensure_streams" in gone.hint
    differs = row_named(report, "jetstream", f"stream {changed.name}")
    assert differs.status == DEGRADED and "max_msgs 1000 wanted, 5 found" in differs.found
    assert "--update" in differs.hint


def test_missing_bridge_consumers_fail_with_the_prefix_in_the_hint(nats_url, hive_files):
    prefix = f"never-run-{uuid.uuid4().hex[:8]}"
    report = verify.run(consumer_prefix=prefix)
    consumers = [row for row in rows_of(report, "jetstream") if row.check.startswith("consumer ")]
    assert len(consumers) == len(FEEDS)
    assert all(row.status == FAILED and row.found == "missing" and prefix in row.hint for row in consumers)


def test_a_dropped_runtime_constraint_and_an_agent_outside_the_lifecycle_fail(healthy):
    agent = Agent.objects.create(name="verify-agent")
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("ALTER TABLE supervision_restarts DROP CONSTRAINT supervision_restarts_completion_check")
        cursor.execute("ALTER TABLE agents DROP CONSTRAINT agents_status_check")
    Agent.objects.filter(pk=agent.pk).update(status="Sleeping")
    report = verify.run()
    constraints = row_named(report, "supervision_db", "constraints")
    assert constraints.status == FAILED and "supervision_restarts: CHECK" in constraints.found
    states = row_named(report, "agent_state", "lifecycle states")
    assert states.status == FAILED and "1 in an unknown state" in states.found
    assert row_named(report, "supervision_db", "tables").status == OK  # one failing check, not the component


def test_the_lifecycle_row_adds_up_to_the_agent_total():
    """Paused, Starting, Created and Stopping agents are counted too, each under its own name."""
    from mistersmith.operations.verify.database import agent_rows

    states = ["Running"] * 4 + ["Idle", "Processing", "Paused", "Paused", "Starting", "Terminated", "Error"]
    Agent.objects.bulk_create(Agent(name=f"sum-{n}", status=state) for n, state in enumerate(states))
    (row,) = [row for row in agent_rows() if row.check == "lifecycle states"]
    assert row.found == "11 agents: 6 active, 1 starting, 2 paused, 2 ended"
    total, parts = row.found.split(": ")
    assert sum(int(part.split()[0]) for part in parts.split(", ")) == int(total.split()[0])


def test_sessions_with_and_without_a_process(healthy):
    alive = Agent.objects.create(name="alive", status="Running")
    InteractiveSession.objects.create(agent=alive, state="Ready", pid=os.getpid())
    report = verify.run()
    process = row_named(report, "sessions", "live sessions have a process")
    assert process.status == OK and process.found == "1 live, 1 with a process"

    gone = dead_pid()
    InteractiveSession.objects.create(agent=alive, state="Processing", pid=gone)
    InteractiveSession.objects.create(agent=alive, state="Starting", pid=None)
    elsewhere = Agent.objects.create(name="elsewhere", status="Terminated")
    AgentInstance.objects.create(agent=elsewhere, status="running", host_name="another-host.example")
    InteractiveSession.objects.create(agent=elsewhere, state="Ready", pid=gone)
    InteractiveSession.objects.create(agent=alive, state="Terminated", pid=gone)  # not live: not counted
    report = verify.run()
    process = row_named(report, "sessions", "live sessions have a process")
    assert process.status == DEGRADED
    assert process.found == (
        f"4 live, 1 with a process, 1 without (pid {gone}), 1 without a pid (not checked), 1 on another host (not checked)"
    )
    ended = row_named(report, "sessions", "sessions of live agents")
    assert (ended.status, ended.found) == (DEGRADED, "1 of 4 checked")


def test_hive_files_missing_unreadable_or_not_in_wal(tmp_path):
    garbage = tmp_path / "hive.db"
    garbage.write_bytes(b"this is not a database" * 100)
    plain = write_sqlite(tmp_path / "memory.db", "CREATE TABLE memory_entries (id INTEGER PRIMARY KEY);")
    with alias_on_file("hive", garbage), alias_on_file("hive_memory", plain):
        report = verify.run()
    hive = row_named(report, "hive_mind", "hive.db readable")
    assert hive.status == FAILED and "DatabaseError" in hive.found and "HIVE_MIND_DIR" in hive.hint
    wal = row_named(report, "hive_mind", "memory.db WAL mode")
    assert (wal.status, wal.found) == (DEGRADED, "delete")
    with alias_on_file("hive", tmp_path / "absent.db"), alias_on_file("hive_memory", plain):
        report = verify.run()
    absent = row_named(report, "hive_mind", "hive.db readable")
    assert absent.status == FAILED and "does not exist" in absent.found
    assert not (tmp_path / "absent.db").exists()  # a check never creates the file


def test_the_pool_rows_read_the_psycopg_pool(healthy):
    report = verify.run()
    pool = {row.check: row for row in rows_of(report, "db_pool")}
    assert pool["database answers"].status == OK
    assert pool["connections below max"].status == OK and "max 30" in pool["connections below max"].found
    assert (pool["waiting requests"].status, pool["waiting requests"].found) == (OK, "0")


def test_the_live_socket_check_at_a_url_nobody_serves_fails():
    report = verify.run(base_url=f"http://127.0.0.1:{closed_port()}")
    live = [row for row in rows_of(report, "browser") if row.check.startswith("live socket at ")]
    assert len(live) == 1 and live[0].status == FAILED and "running at that URL" in live[0].hint


# --- The command -------------------------------------------------------------------------------


def test_the_command_prints_a_table_and_exits_0_when_nothing_failed(healthy, capsys):
    call_command("verify_state", no_color=True)
    out = capsys.readouterr().out
    header, *lines = out.strip().splitlines()
    assert header.split() == ["COMPONENT", "CHECK", "EXPECTED", "FOUND", "STATUS", "HINT"]
    for component in COMPONENTS:
        assert any(line.startswith(component) for line in lines)
    assert " 0 failed in " in lines[-1]


def test_the_command_json_and_a_degraded_row_exit_0(healthy, capsys):
    InteractiveSession.objects.create(agent=Agent.objects.create(name="gone"), state="Ready", pid=dead_pid())
    call_command("verify_state", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == DEGRADED and report["counts"][FAILED] == 0
    assert set(report) == {"status", "checked_at", "duration_ms", "counts", "rows"}
    (sessions,) = [r for r in report["rows"] if r["check"] == "live sessions have a process"]
    assert sessions["status"] == DEGRADED and sessions["hint"]
    assert all(set(r) == {"component", "check", "expected", "found", "status", "hint"} for r in report["rows"])


def test_the_command_exits_1_when_a_check_failed(healthy, capsys):
    with override_settings(NATS_URL=f"nats://127.0.0.1:{closed_port()}"), pytest.raises(CommandError) as error:
        call_command("verify_state", no_color=True)
    assert error.value.returncode == 1 and "checks failed" in str(error.value)
    assert "failed" in capsys.readouterr().out


def test_the_process_exit_status_is_1_and_stdout_stays_json(nats_url):
    """The real exit status, from a process of its own (NATS at a closed port: JetStream fails)."""
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{closed_port()}"}
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_state", "--json"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == FAILED
    assert [r["status"] for r in report["rows"] if r["component"] == "jetstream"] == [FAILED]
    assert "checks failed" in done.stderr and "Traceback" not in done.stderr


# --- The admin page and its JSON ---------------------------------------------------------------


@pytest.fixture
def make_user(django_user_model):
    def make(*, staff: bool):
        return django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}", is_staff=staff)

    return make


def test_the_page_is_for_staff_only(client, make_user, healthy):
    page = reverse("verify_state:page")
    assert page == "/admin/state/verify/"
    response = client.get(page)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(make_user(staff=False))
    response = client.get(page)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(make_user(staff=True))  # staff without any permission
    response = client.get(page)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="verify-table"' in body and 'data-refresh-seconds="10"' in body and "verify_state.js" in body
    for component in COMPONENTS:
        assert f"<td>{component}</td>" in body
    assert client.post(page).status_code == 405
    assert 'data-refresh-seconds="2"' in client.get(page, {"refresh": "1"}).content.decode()


def test_the_json_endpoint_is_for_staff_only(client, make_user, healthy):
    url = reverse("verify_state:json")
    assert url == "/admin/state/verify.json"
    assert client.get(url).status_code == 401
    client.force_login(make_user(staff=False))
    assert client.get(url).status_code == 403
    client.force_login(make_user(staff=True))
    response = client.get(url)
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    report = response.json()
    assert {row["component"] for row in report["rows"]} == set(COMPONENTS)
    assert report["counts"][FAILED] == 0


def test_the_admin_home_links_the_page_for_staff(admin_client):
    assert reverse("verify_state:page") in admin_client.get("/admin/").content.decode()


# --- Liveness and readiness --------------------------------------------------------------------


def test_healthz_and_readyz_answer_anyone_without_details(client, nats_url):
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "components": {"database": OK, "nats": OK, "channel_layer": OK},
    }


def test_readyz_is_503_with_nats_away(client):
    with override_settings(NATS_URL=f"nats://127.0.0.1:{closed_port()}"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "components": {"database": OK, "nats": FAILED, "channel_layer": OK},
    }


def test_the_report_has_the_runtimes_answers_and_each_feeds_freshness(healthy):
    report = verify.run()
    runtime = {row.check: row for row in rows_of(report, "jetstream") if row.check.startswith("runtime ")}
    assert set(runtime) == {"runtime SystemHealth", "runtime PoolStatus"}
    assert all(row.status == DEGRADED and row.found == "never asked" for row in runtime.values())
    freshness = [row.check for row in rows_of(report, "jetstream") if row.check.startswith("freshness ")]
    assert freshness == [f"freshness {feed.suffix}" for feed in FEEDS]


def test_the_socket_round_trip_gives_back_its_socket_slot_every_time(settings):
    """Its user is unsaved (pk None): the per-user socket cap once never gave such a slot back, and
    after LIVE_SOCKETS_PER_USER checks every further round trip was refused as one socket too many."""
    import asyncio

    from mistersmith.live.consumer import OPEN_SOCKETS
    from mistersmith.operations.verify import live as verify_live

    settings.LIVE_SOCKETS_PER_USER = 2
    for _ in range(4):
        row = asyncio.run(verify_live.round_trip_row())
        assert row.status == OK, row
    assert OPEN_SOCKETS[None] == 0


# --- the page's order and fix links (mistersmith/operations/verify/fixes.py) -----------------------


def test_the_page_and_its_json_list_failed_then_degraded_rows_first_with_links_to_the_fix(
    admin_client, client, make_user, healthy
):
    agent = Agent.objects.create(name="fix-agent", status="Running")
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("ALTER TABLE agents DROP CONSTRAINT agents_status_check")
    Agent.objects.filter(pk=agent.pk).update(status="Sleeping")  # failed: lifecycle states
    InteractiveSession.objects.create(agent=agent, state="Ready", pid=dead_pid())  # degraded: sessions
    report = admin_client.get(reverse("verify_state:json")).json()
    statuses = [row["status"] for row in report["rows"]]
    first_ok = statuses.index(OK)
    assert statuses[0] == FAILED and DEGRADED in statuses[:first_ok]
    assert statuses[:first_ok] == sorted(statuses[:first_ok], key=[FAILED, DEGRADED].index)
    assert OK not in statuses[:first_ok] and set(statuses[first_ok:]) == {OK}
    rows = {(row["component"], row["check"]): row for row in report["rows"]}
    lifecycle = rows[("agent_state", "lifecycle states")]
    assert lifecycle["fix"] == {"label": "Agents in the admin", "url": reverse("admin:agents_agent_changelist")}
    sessions = rows[("sessions", "live sessions have a process")]
    assert sessions["status"] == DEGRADED
    assert admin_client.get(sessions["fix"]["url"]).context["cl"].result_count == 1
    assert all(row["fix"] is None for row in report["rows"] if row["status"] == OK)
    page = admin_client.get(reverse("verify_state:page")).content.decode()
    assert page.index("lifecycle states") < page.index("live sessions have a process") < page.index("<td>db_pool</td>")
    assert f'<a class="verify-fix" href="{reverse("admin:agents_agent_changelist")}">Agents in the admin</a>' in page

    # staff who may not open the pages get the hints without links, never a dead link
    client.force_login(make_user(staff=True))
    report = client.get(reverse("verify_state:json")).json()
    assert report["rows"][0]["status"] == FAILED
    assert all(row["fix"] is None for row in report["rows"])
    assert 'class="verify-fix"' not in client.get(reverse("verify_state:page")).content.decode()
