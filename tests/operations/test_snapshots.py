"""Snapshots through the real stack: PostgreSQL (COPY both ways), NATS (stream identities, a
stream's messages out and back in), real SQLite files (backup API), the commands and the admin.

The state is written and committed (transactional tests), exported, wiped, restored, and
compared table by table (every row as text) and file by file (SQLite dumps).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import tarfile
import uuid
from array import array
from pathlib import Path

import nats as nats_client
import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from nats.js.api import StreamConfig

from agents.models import AgentAnomaly, AgentCommandRecord, BulkCommandRun, Discovery
from mistersmith.live.models import BridgePosition, CatchUp, DeadLetter, RuntimeProbe
from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.api import (
    ExportOptions,
    ImportOptions,
    export_snapshot,
    import_snapshot,
    list_snapshots,
    resolve,
)
from mistersmith.operations.snapshots.format import MANIFEST
from mistersmith.operations.snapshots.restore import _renumber
from mistersmith.operations.snapshots.streams import RESTORED_ID_HEADER, Renumbering
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart
from tests.hive.sqlite_files import OLD_HIVE_SQL, OLD_MEMORY_SQL, write_sqlite

pytestmark = pytest.mark.django_db(transaction=True)


# --- The state, and how it is compared --------------------------------------------------------


@pytest.fixture
def hive_files(tmp_path, settings):
    """Real claude-flow files in WAL mode, as the installation's Hive Mind."""
    folder = tmp_path / "hive"
    folder.mkdir()
    paths = []
    for name, script in (("hive.db", OLD_HIVE_SQL), ("memory.db", OLD_MEMORY_SQL)):
        path = write_sqlite(folder / name, script)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
        paths.append(path)
    settings.HIVE_DB_PATH, settings.HIVE_MEMORY_DB_PATH = paths
    return paths


@pytest.fixture
def snapshots(tmp_path, settings) -> Path:
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    return settings.SNAPSHOT_DIR


@pytest.fixture
def state(hive_files, snapshots, admin_user):
    """A small installation with something in every table, text that COPY must escape, a user reference."""
    demo.seed(prefix=f"s{uuid.uuid4().hex[:6]}", nodes=25, failures=150, sessions=3, hive=False)
    node = SupervisionNode.objects.filter(node_type="Worker").first()
    SupervisionFailure.objects.create(
        node=node,
        failure_reason="Crash",
        failure_detail='tab\there, newline\nthere, backslash \\ and "quotes", ünïcödé ✓',
        stack_trace="line 1\r\nline 2",
        context={"nested": {"list": [1, None, "x"]}, "empty": {}},
    )
    SupervisionRestart.objects.create(
        node=node, restart_attempt_number=1, restart_delay_ms=100, requested_by=admin_user, reason="test"
    )
    agent_id = uuid.uuid4()
    run = BulkCommandRun.objects.create(
        command="Pause", scope="selection", agent_ids=[str(agent_id)], total=1, requested_by=admin_user
    )
    AgentCommandRecord.objects.create(
        agent_id=agent_id,
        command="Pause",
        outcome="ok",
        requested_by=admin_user,
        requested_by_name="admin",
        bulk_run=run,
    )
    AgentAnomaly.objects.create(agent_id=uuid.uuid4(), event_kind="StateChanged", detail="Idle -> Created")
    for sequence in (3, 4):
        Discovery.objects.create(
            agent_id="a1",
            agent_role="researcher",
            discovery_type="Insight",
            content=f"insight {sequence}",
            confidence=0.5,
            timestamp="2026-01-01T00:00:00Z",
            stream_sequence=sequence,
        )
    BridgePosition.objects.create(consumer="mistersmith-console-agents", stream="AGENT_EVENTS", sequence=7)
    DeadLetter.record(
        stream="AGENT_EVENTS", subject="agent.x.events", sequence=5, reason="bad_json", error="x", data=b"{"
    )
    CatchUp.objects.create(
        consumer="mistersmith-console-agents",
        stream="AGENT_EVENTS",
        first_sequence=1,
        target_sequence=7,
        applied_sequence=7,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    RuntimeProbe.record_asked("SystemHealth", uuid.uuid4().hex, timezone.now())
    return hive_files


def table_rows() -> dict[str, list[str]]:
    """Every state table, every row as PostgreSQL's text of the row, sorted."""
    rows = {}
    with connection.cursor() as cursor:
        for spec in snapshot_tables.state_tables():
            cursor.execute(f'SELECT t::text FROM "{spec.table}" t ORDER BY 1')
            rows[spec.table] = [row[0] for row in cursor.fetchall()]
    return rows


def hive_dump(paths: list[Path]) -> dict[str, list[str]]:
    dumps = {}
    for path in paths:
        if path.exists():
            with sqlite3.connect(path) as db:
                dumps[path.name] = list(db.iterdump())
    return dumps


def full_state(hive: list[Path]) -> tuple:
    return table_rows(), hive_dump(hive)


def wipe(hive: list[Path]) -> None:
    tables = ", ".join(f'"{spec.table}"' for spec in snapshot_tables.state_tables())
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")
    for path in hive:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)


def export(directory: Path, *args: str) -> Path:
    out = io.StringIO()
    call_command("export_state", "--output", str(directory), "--quiet", *args, stdout=out)
    return Path(out.getvalue().strip().splitlines()[-1].split()[1])


def restore(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_state", str(path), "--quiet", *args, stdout=out)
    return out.getvalue()


def manifest_of(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile(MANIFEST).read())


def repacked(path: Path, change) -> Path:
    """A copy of the snapshot whose manifest ``change(manifest)`` edited (the members as they were)."""
    manifest = manifest_of(path)
    change(manifest)
    target = path.with_name(f"edited-{path.name}")
    with tarfile.open(path) as source, tarfile.open(target, "w") as tar:
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for member in source.getmembers():
            if member.name != MANIFEST:
                tar.addfile(member, source.extractfile(member))
    return target


# --- Round trip --------------------------------------------------------------------------------


def test_export_wipe_import_gives_identical_state(state, snapshots):
    before = full_state(state)
    assert all(before[0].values()), [table for table, rows in before[0].items() if not rows]
    path = export(snapshots)

    manifest = manifest_of(path)
    assert manifest["format"] == "mistersmith-snapshot" and manifest["format_version"] == 1
    assert manifest["console_version"] == "0.1.0"
    assert "0001_initial" in manifest["database"]["migrations"]["supervision"]
    assert manifest["components"]["supervision"]["rows"] == sum(
        len(before[0][t]) for t in before[0] if t.startswith("supervision_")
    )
    assert {m["table"]: m["rows"] for m in manifest["members"] if m["kind"] == "table"} == {
        table: len(rows) for table, rows in before[0].items()
    }
    assert all(len(member["sha256"]) == 64 for member in manifest["members"])
    assert {m["file"] for m in manifest["members"] if m["kind"] == "hive"} == {"hive.db", "memory.db"}

    wipe(state)
    assert not any(table_rows().values()) and not state[0].exists()
    output = restore(path)

    assert full_state(state) == before
    assert "Restored" in output
    # Sequences continue after the restored rows.
    newest = DeadLetter.objects.order_by("-id").first().id
    DeadLetter.record(stream="S", subject="s", sequence=1, reason="r", error="e", data=b"")
    assert DeadLetter.objects.order_by("-id").first().id > newest


def test_references_to_users_missing_here_become_null(state, snapshots, admin_user):
    path = export(snapshots)
    wipe(state)
    admin_user.delete()  # an installation with other accounts
    output = restore(path)
    assert SupervisionRestart.objects.filter(reason="test").get().requested_by_id is None
    record = AgentCommandRecord.objects.get()
    assert record.requested_by_id is None and record.requested_by_name == "admin"
    assert record.bulk_run.requested_by_id is None  # the bulk run of the record survives, without its user
    assert "supervision_restarts.requested_by_id: 1 references" in output


def test_gzip_and_uncompressed_snapshots_restore_too(state, snapshots):
    before = full_state(state)
    for codec in ("gzip", "none"):
        path = export(snapshots, "--compression", codec)
        assert manifest_of(path)["compression"] == codec
        wipe(state)
        restore(path)
        assert full_state(state) == before


# --- Refusals: nothing is changed -----------------------------------------------------------


def test_a_tampered_member_is_refused_before_anything_changes(state, snapshots):
    path = export(snapshots)
    with tarfile.open(path) as tar:
        offset = tar.getmember("db/supervision_failures.copy.zst").offset_data
    with path.open("r+b") as file:
        file.seek(offset + 20)
        byte = file.read(1)
        file.seek(offset + 20)
        file.write(bytes([byte[0] ^ 0xFF]))
    SupervisionNode.objects.filter(node_type="Service").update(node_type_detail="changed after the snapshot")
    before = full_state(state)

    with pytest.raises(CommandError, match=r"db/supervision_failures.copy.zst: checksum mismatch"):
        restore(path, "--replace", "--yes")
    assert full_state(state) == before


def test_a_newer_format_and_a_foreign_file_are_refused(state, snapshots):
    path = export(snapshots)
    newer = repacked(path, lambda manifest: manifest.update(format_version=2))
    before = full_state(state)
    with pytest.raises(CommandError, match=r"format version 2, newer than the 1 this console reads"):
        restore(newer, "--replace", "--yes")

    foreign = snapshots / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(state[0], arcname="hive.db")
    with pytest.raises(CommandError, match="not a MisterSmith snapshot"):
        restore(foreign, "--replace", "--yes")
    not_a_tar = snapshots / "junk.tar"
    not_a_tar.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(600))
    with pytest.raises(CommandError, match="not a MisterSmith snapshot"):
        restore(not_a_tar, "--replace", "--yes")
    assert full_state(state) == before


def test_a_snapshot_of_a_newer_schema_is_refused(state, snapshots):
    path = export(snapshots)
    newer = repacked(path, lambda m: m["database"]["migrations"]["agents"].append("9999_from_the_future"))
    wipe(state)
    with pytest.raises(CommandError, match=r"newer schema: migrations agents.9999_from_the_future"):
        restore(newer)

    def aimed_at_users(manifest):
        member = next(m for m in manifest["members"] if m.get("table") == "mistersmith_deadletter")
        member["table"] = "auth_user"

    with pytest.raises(CommandError, match=r"auth_user is not a state table here"):
        restore(repacked(path, aimed_at_users))
    assert not any(table_rows().values())


def test_dry_run_changes_nothing(state, snapshots):
    path = export(snapshots)
    SupervisionNode.objects.filter(node_type="Service").update(node_type_detail="changed")
    before = full_state(state)
    output = restore(path, "--replace", "--dry-run")
    assert f"Checksums: all {len(manifest_of(path)['members'])} members verified." in output
    assert "it will be REPLACED" in output and "Dry run: nothing was changed." in output
    assert full_state(state) == before

    wipe(state)
    output = restore(path, "--dry-run")
    assert "Target: empty." in output
    assert not any(table_rows().values()) and not state[0].exists()


def test_a_non_empty_target_is_refused_without_replace(state, snapshots):
    path = export(snapshots)
    before = full_state(state)
    with pytest.raises(CommandError, match=r"not empty \(supervision_child_states: .* pass --replace"):
        restore(path)
    assert full_state(state) == before


def test_replace_asks_first_and_a_no_changes_nothing(state, snapshots, monkeypatch):
    path = export(snapshots)
    DeadLetter.objects.all().delete()
    before = full_state(state)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="cancelled"):
        restore(path, "--replace")
    assert full_state(state) == before


# --- Replace -----------------------------------------------------------------------------------


def test_replace_puts_the_snapshot_state_back(state, snapshots, monkeypatch):
    snapshot_state = full_state(state)
    path = export(snapshots)
    # Life goes on after the snapshot: rows added, changed and removed, the hive written.
    demo.seed(prefix="later", nodes=5, failures=20, sessions=1, hive=False)
    SupervisionFailure.objects.filter(failure_reason="Crash").delete()
    BridgePosition.objects.update(sequence=99)
    with sqlite3.connect(state[0]) as db:
        db.execute("UPDATE swarms SET name = 'renamed'")
    assert full_state(state) != snapshot_state

    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    restore(path, "--replace")
    assert full_state(state) == snapshot_state


def test_positions_move_to_the_end_of_another_stream(state, snapshots):
    """A snapshot from another installation: its stream numbering means nothing here."""
    path = export(snapshots)

    def other_streams(manifest):
        for identity in manifest["streams"].values():
            if identity:
                identity["created"] = "2020-01-01T00:00:00+00:00"

    moved = repacked(path, other_streams)
    wipe(state)
    output = restore(moved, "--dry-run")
    assert "moved to the stream's current end" in output
    restore(moved)
    from mistersmith.operations.snapshots.streams import stream_identities

    last = stream_identities(["AGENT_EVENTS"])["AGENT_EVENTS"]["last_seq"]
    assert BridgePosition.objects.get().sequence == last
    assert set(Discovery.objects.values_list("stream_sequence", flat=True)) == {None}


# --- Streams -----------------------------------------------------------------------------------


@pytest.fixture
def private_stream(nats_url):
    """A stream of this test's own (the contract's streams are shared and are never purged here)."""
    name = f"SNAP_{uuid.uuid4().hex[:8].upper()}"
    prefix = name.lower()

    async def create():
        client = await nats_client.connect(nats_url)
        await client.jetstream().add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"], duplicate_window=120))
        await client.close()

    asyncio.run(create())
    yield name, prefix

    async def delete():
        client = await nats_client.connect(nats_url)
        await client.jetstream().delete_stream(name)
        await client.close()

    asyncio.run(delete())


def stream_call(nats_url: str, work):
    async def main():
        client = await nats_client.connect(nats_url)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()

    return asyncio.run(main())


def read_all(nats_url: str, name: str) -> list[tuple]:
    async def work(js):
        info = await js.stream_info(name)
        found = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(name, sequence)
            found.append((message.seq, message.subject, message.headers or {}, message.data))
        return found

    return stream_call(nats_url, work)


def test_stream_messages_are_exported_and_republished_with_positions_translated(
    state, snapshots, private_stream, nats_url
):
    name, prefix = private_stream

    async def publish(js):
        for index in range(5):
            headers = {"Nats-Msg-Id": f"m{index}-{uuid.uuid4().hex}", "X-Trace": f"t{index}"}
            await js.publish(f"{prefix}.agent.{index}", f"payload {index} \x00\xff".encode("latin-1"), headers=headers)

    stream_call(nats_url, publish)
    original = read_all(nats_url, name)
    BridgePosition.objects.create(consumer="test-private", stream=name, sequence=original[2][0])

    result = export_snapshot(ExportOptions(streams=True, stream_names=[name]))
    member = next(m for m in result.manifest["members"] if m["kind"] == "stream")
    assert member["messages"] == 5 and not member["truncated"]

    # The stream moves on: purged, other messages published. Without --replace the restore refuses.
    stream_call(nats_url, lambda js: js.purge_stream(name))
    stream_call(nats_url, lambda js: js.publish(f"{prefix}.later", b"later"))
    with pytest.raises(Exception, match="not empty"):
        import_snapshot(result.path, ImportOptions(streams=True))

    restored = import_snapshot(result.path, ImportOptions(replace=True, streams=True))
    assert restored.republished == {name: 5}
    again = read_all(nats_url, name)
    assert [(s, d) for _, s, _, d in again] == [(s, d) for _, s, _, d in original]
    for (_, _, old_headers, _), (_, _, new_headers, _) in zip(original, again, strict=True):
        assert new_headers["X-Trace"] == old_headers["X-Trace"]
        # Stored moments ago: the server still remembers the id, so it travels under another name.
        assert new_headers.get("Nats-Msg-Id", new_headers.get(RESTORED_ID_HEADER)) == old_headers["Nats-Msg-Id"]
    assert BridgePosition.objects.get(consumer="test-private").sequence == again[2][0]


def test_the_stream_cap_keeps_the_newest_messages(state, snapshots, private_stream, nats_url):
    name, prefix = private_stream

    async def publish(js):
        for index in range(20):
            await js.publish(f"{prefix}.x", bytes(100) + str(index).encode())

    stream_call(nats_url, publish)
    result = export_snapshot(ExportOptions(streams=True, stream_names=[name], stream_max_bytes=1000))
    member = next(m for m in result.manifest["members"] if m["kind"] == "stream")
    assert member["truncated"] and 0 < member["messages"] < 20 and member["bytes"] <= 1000
    assert member["last_seq"] == read_all(nats_url, name)[-1][0]


def test_renumbering_translates_unique_sequences_without_collisions():
    for sequence in (5, 7, 9):
        Discovery.objects.create(
            agent_id="a",
            agent_role="r",
            discovery_type="Pattern",
            content=str(sequence),
            confidence=1,
            timestamp="2026-01-01T00:00:00Z",
            stream_sequence=sequence,
        )
    BridgePosition.objects.create(consumer="c", stream="DISCOVERIES", sequence=8)
    # 5 -> 7 while 7 still exists: the unique column must not trip over it.
    _renumber({"DISCOVERIES": Renumbering(old=array("q", [5, 7]), new=array("q", [7, 20]), before_first=3)})
    assert dict(Discovery.objects.values_list("content", "stream_sequence")) == {"5": 7, "7": 20, "9": None}
    assert BridgePosition.objects.get().sequence == 20


def test_renumbering_positions():
    renumbering = Renumbering(old=array("q", [10, 11, 15]), new=array("q", [101, 102, 103]), before_first=100)
    assert [renumbering.position(p) for p in (9, 10, 12, 15, 99)] == [100, 101, 102, 103, 103]
    assert renumbering.exact(11) == 102 and renumbering.exact(12) is None


# --- The admin page ------------------------------------------------------------------------------


def test_only_superusers_reach_the_snapshot_pages(client, django_user_model, snapshots, hive_files):
    url = reverse("snapshots:list")
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    assert client.get(reverse("snapshots:download", args=["x.tar"])).status_code == 403
    assert "snapshot-pages" not in client.get(reverse("admin:index")).content.decode()
    assert not snapshots.exists() or not list(snapshots.glob("*.tar"))


def test_create_download_and_restore_through_the_admin(admin_client, admin_user, state, snapshots):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("snapshots:list") in index

    response = admin_client.post(reverse("snapshots:list"))
    assert response.status_code == 302
    [snapshot] = list_snapshots()
    created = LogEntry.objects.get(action_flag=ADDITION, object_id=snapshot.name)
    assert created.user == admin_user and "supervision" in created.change_message
    page = admin_client.get(reverse("snapshots:list")).content.decode()
    assert snapshot.name in page and "Restore" in page

    download = admin_client.get(reverse("snapshots:download", args=[snapshot.name]))
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="{snapshot.name}"'
    assert b"".join(download.streaming_content) == snapshot.path.read_bytes()

    snapshot_state = full_state(state)
    demo.seed(prefix="after", nodes=4, failures=10, sessions=0, hive=False)
    confirm = admin_client.get(reverse("snapshots:restore", args=[snapshot.name])).content.decode()
    assert "it will be REPLACED" in confirm and 'name="confirm"' in confirm

    unconfirmed = admin_client.post(reverse("snapshots:restore", args=[snapshot.name]))
    assert unconfirmed.status_code == 302 and full_state(state) != snapshot_state
    restored = admin_client.post(reverse("snapshots:restore", args=[snapshot.name]), {"confirm": snapshot.name})
    assert restored.status_code == 302
    assert full_state(state) == snapshot_state
    entry = LogEntry.objects.get(action_flag=CHANGE, object_id=snapshot.name)
    assert entry.user == admin_user and entry.change_message.startswith(f"Restored snapshot {snapshot.name}")
    recent = admin_client.get(reverse("admin:index")).content.decode()  # the admin's "Recent actions"
    assert snapshot.name in recent


def test_the_admin_refuses_names_outside_the_directory(admin_client, snapshots, tmp_path):
    (tmp_path / "outside.tar").write_bytes(b"x")
    for name in ("../outside.tar", "..%2Foutside.tar", "missing.tar", "notatar.txt"):
        assert admin_client.get(f"/admin/state/snapshots/{name}/download").status_code == 404
    with pytest.raises(Exception, match="not a snapshot file name"):
        resolve("../outside.tar")


def test_creating_a_snapshot_needs_the_csrf_token(admin_user, snapshots, hive_files):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("snapshots:list")).status_code == 403
    assert not snapshots.exists() or not list(snapshots.glob("*.tar"))
