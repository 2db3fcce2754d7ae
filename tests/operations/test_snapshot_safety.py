"""Snapshots as an attacker would craft them (issue 12, items 4 and 5), through the real stack:
PostgreSQL, a NATS server of the test's own (its SYSTEM_EVENTS stream may be purged and its
system.control and agent.command subjects watched without touching the shared server), real
SQLite, the import_state command and the admin page.

A restore never sends the runtime a command: control and command messages are left out and
counted, a message outside its stream's subjects refuses the whole snapshot before any stream is
purged. Every malformed snapshot (a decompression bomb, deep JSON, missing keys, bad members,
broken SQLite, a truncated tar) is a SnapshotError that says what is wrong, never a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats as nats_client
import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse

from agents.models import AgentAnomaly
from mistersmith.jetstream.client import nats_url
from mistersmith.jetstream.streams import ensure_streams
from mistersmith.operations.snapshots import hive as snapshot_hive
from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.api import ExportOptions, ImportOptions, export_snapshot, import_snapshot
from mistersmith.operations.snapshots.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MemberTooLarge,
    SnapshotError,
    UnsupportedSnapshot,
    console_version,
)
from tests.services import PrivateNats

pytestmark = pytest.mark.django_db(transaction=True)


# --- Crafting snapshots ------------------------------------------------------------------------


@pytest.fixture
def snapshots(tmp_path, settings) -> Path:
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.SNAPSHOT_DIR.mkdir()
    settings.HIVE_DB_PATH = tmp_path / "hive" / "hive.db"
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "hive" / "memory.db"
    return settings.SNAPSHOT_DIR


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def manifest_for(members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "console_version": console_version(),
        "created_at": "2026-01-01T00:00:00+00:00",
        "created_by": "attacker",
        "compression": "zstd",
        "database": {"migrations": snapshot_tables.applied_migrations()},
        "streams": {},
        "components": {},
        "members": members,
    }


def craft(
    path: Path, parts: list[tuple[dict[str, Any], bytes]], change=None, manifest_body: bytes | None = None
) -> Path:
    """A snapshot of ``parts`` (member description, stored bytes) with correct sizes and checksums
    (the checksums are not a signature: an attacker computes them too); ``change`` edits the manifest."""
    members = [
        {**described, "size": len(stored), "sha256": hashlib.sha256(stored).hexdigest()} for described, stored in parts
    ]
    manifest = manifest_for([dict(member) for member in members])  # edits leave the tar entries alone
    if change:
        change(manifest)
    body = manifest_body if manifest_body is not None else json.dumps(manifest).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for member, (_, stored) in zip(members, parts, strict=True):
            info = tarfile.TarInfo(member["name"])
            info.size = len(stored)
            tar.addfile(info, io.BytesIO(stored))
    return path


def copy_text_member(rows: bytes, **extra: Any) -> tuple[dict[str, Any], bytes]:
    columns = ["id", "agent_id", "event_kind", "detail", "recorded_at"]
    described = {
        "name": "db/agents_agentanomaly.copy.zst",
        "kind": "table",
        "component": "agents",
        "table": "agents_agentanomaly",
        "columns": [c for c in columns if c in snapshot_tables.table_columns("agents_agentanomaly")],
        "rows": rows.count(b"\n"),
        "raw_size": len(rows),
        **extra,
    }
    return described, zstd(rows)


def restore_refused(path: Path, match: str, **options: Any) -> SnapshotError:
    with pytest.raises(SnapshotError, match=match) as caught:
        import_snapshot(path, ImportOptions(replace=True, **options))
    return caught.value


# --- Item 5: decompression bombs ---------------------------------------------------------------


def test_a_hive_bomb_stops_at_the_declared_size(snapshots, monkeypatch):
    """64 KiB of zstd that would decompress to 256 MiB, declared as a 4 KiB SQLite file: the
    scratch file never grows past 4 KiB and the restore is a MemberTooLarge."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(1024 * 1024)
    stored = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    assert len(stored) < 64 * 1024
    described = {"name": "hive/hive.db.zst", "kind": "hive", "component": "hive", "file": "hive.db"}
    path = craft(snapshots / "bomb.tar", [({**described, "rows": 1, "file_size": 4096}, stored)])
    written: dict[str, int] = {}
    unpack = snapshot_hive.unpack

    def measured(source, scratch):
        try:
            unpack(source, scratch)
        finally:
            written[scratch.name] = scratch.stat().st_size if scratch.exists() else 0

    monkeypatch.setattr(snapshot_hive, "unpack", measured)
    error = restore_refused(path, "decompresses to more than the 4,096 bytes its manifest declares")
    assert isinstance(error, MemberTooLarge)
    assert written["hive.db"] <= 4096
    assert not Path(snapshot_hive.hive_paths()["hive.db"]).exists()


def test_a_member_without_a_declared_size_stops_at_the_global_cap(snapshots, settings):
    """An older-style member (no raw_size): the SNAPSHOT_MEMBER_MAX_BYTES setting bounds it, and the
    table transaction rolls back."""
    settings.SNAPSHOT_MEMBER_MAX_BYTES = 64 * 1024
    AgentAnomaly.objects.create(agent_id=uuid.uuid4(), event_kind="Kept", detail="before")
    row = f"1\t{uuid.uuid4()}\tX\t{'y' * 1000}\t2026-01-01 00:00:00+00\n".encode()
    described, stored = copy_text_member(row * 200)
    del described["raw_size"]
    path = craft(snapshots / "big-table.tar", [(described, stored)])
    restore_refused(path, r"more than the 65,536-byte cap \(SNAPSHOT_MEMBER_MAX_BYTES\)")
    assert list(AgentAnomaly.objects.values_list("event_kind", flat=True)) == ["Kept"]


# --- Item 5: malformed snapshots are SnapshotErrors ---------------------------------------------


def _drop(key: str, index: int = 0):
    return lambda manifest: manifest["members"][index].pop(key)


def _set(key: str, value: Any):
    return lambda manifest: manifest.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_drop("sha256"), "no valid 'sha256'"),
        (_drop("columns"), "no valid 'columns'"),
        (_drop("table"), "no valid 'table'"),
        (lambda m: m["members"].__setitem__(0, "db/x"), "member 0 is not an object"),
        (lambda m: m["members"][0].__setitem__("kind", "shell"), "unknown kind 'shell'"),
        (lambda m: m["members"][0].__setitem__("raw_size", -1), "invalid raw_size"),
        (lambda m: m["members"][0].__setitem__("columns", [1, 2]), "invalid columns"),
        (lambda m: m["members"].append(dict(m["members"][0])), "listed twice"),
        (_set("database", ["not", "an", "object"]), "database is not an object"),
        (_set("database", {"migrations": {"agents": "0001"}}), "database.migrations"),
        (_set("streams", {"AGENT_EVENTS": ["x"]}), "streams.AGENT_EVENTS is not a stream identity"),
        (_set("compression", "bzip9"), "compression 'bzip9'"),
    ],
)
def test_a_manifest_with_missing_or_wrong_keys_is_refused(snapshots, change, match):
    path = craft(snapshots / "keys.tar", [copy_text_member(b"")], change=change)
    error = restore_refused(path, match)
    assert isinstance(error, UnsupportedSnapshot) and "malformed manifest" in str(error)


def test_deeply_nested_json_is_a_snapshot_error(snapshots):
    path = craft(snapshots / "deep.tar", [], manifest_body=b"[" * 200_000 + b"]" * 200_000)
    restore_refused(path, "manifest.json is not valid JSON")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("import_state", str(path), "--quiet", "--replace", "--no-input")


def test_a_member_that_is_not_zstd_is_a_snapshot_error(snapshots):
    described, _ = copy_text_member(b"")
    path = craft(snapshots / "garbage.tar", [(described, os.urandom(4096))])
    restore_refused(path, "db/agents_agentanomaly.copy.zst cannot be decompressed")


def test_a_member_shorter_than_declared_is_a_snapshot_error(snapshots):
    described, stored = copy_text_member(b"")
    path = craft(snapshots / "short.tar", [({**described, "raw_size": 10}, stored)])
    restore_refused(path, "decompresses to 0 bytes, not the 10 its manifest declares")


def test_bad_copy_text_rolls_back_as_a_snapshot_error(snapshots):
    AgentAnomaly.objects.create(agent_id=uuid.uuid4(), event_kind="Kept", detail="before")
    path = craft(snapshots / "copy.tar", [copy_text_member(b"not\ta\trow\n")])
    restore_refused(path, "The tables could not be restored .*rolled back")
    assert list(AgentAnomaly.objects.values_list("event_kind", flat=True)) == ["Kept"]


def test_a_broken_sqlite_file_is_a_snapshot_error(snapshots):
    content = b"SQLite format 3\x00" + os.urandom(8192)
    described = {"name": "hive/memory.db.zst", "kind": "hive", "component": "hive", "file": "memory.db", "rows": 1}
    path = craft(snapshots / "sqlite.tar", [({**described, "file_size": len(content)}, zstd(content))])
    restore_refused(path, "memory.db is (not a readable SQLite database|damaged)")
    assert not Path(snapshot_hive.hive_paths()["memory.db"]).exists()


def test_a_truncated_tar_is_a_snapshot_error(snapshots):
    described, _ = copy_text_member(b"")
    path = craft(snapshots / "truncated.tar", [(described, os.urandom(20_000))])
    with tarfile.open(path) as tar:
        cut = tar.getmember(described["name"]).offset_data + 5_000
    path.write_bytes(path.read_bytes()[:cut])
    restore_refused(path, "damaged|cannot be read")


def test_the_admin_answers_a_crafted_snapshot_with_a_message_not_a_500(admin_client, snapshots):
    craft(snapshots / "deep.tar", [], manifest_body=b"[" * 200_000 + b"]" * 200_000)
    listing = admin_client.get(reverse("snapshots:list"))
    assert listing.status_code == 200 and "not valid JSON" in listing.content.decode()
    for response in (
        admin_client.get(reverse("snapshots:restore", args=["deep.tar"])),
        admin_client.post(reverse("snapshots:restore", args=["deep.tar"]), {"confirm": "deep.tar"}),
    ):
        assert response.status_code == 302
        followed = admin_client.get(response["Location"]).content.decode()
        assert "not valid JSON" in followed


# --- Item 4: a restore never commands the runtime ----------------------------------------------


@pytest.fixture
def own_nats(tmp_path, settings, stop_after):
    """A NATS server of this test's own, with the contract's streams, as the console's NATS."""
    server = stop_after(PrivateNats(tmp_path).start())
    settings.NATS_URL = server.url
    nats_url.cache_clear()
    assert nats_url() == server.url  # the shared server's streams are never purged here

    async def create(js):
        await ensure_streams(js)

    on_nats(server.url, create)
    yield server.url
    nats_url.cache_clear()


def on_nats(url: str, work):
    async def main():
        client = await nats_client.connect(url)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()

    return asyncio.run(main())


def envelope(payload: Any) -> bytes:
    return json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "timestamp": {"secs_since_epoch": 1767225600, "nanos_since_epoch": 0},
            "source_agent": None,
            "target_agent": None,
            "correlation_id": None,
            "payload": payload,
        }
    ).encode()


def stream_contents(url: str, name: str) -> list[tuple[str, bytes]]:
    async def work(js):
        info = await js.stream_info(name)
        found = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(name, sequence)
            found.append((message.subject, message.data))
        return found

    return on_nats(url, work)


def restore_watching(url: str, subjects: list[str], restore) -> list[tuple[str, bytes]]:
    """Run ``restore()`` while core subscribers watch ``subjects``; what they saw (a marker
    published afterwards and received tells every earlier delivery has arrived)."""
    seen: list[tuple[str, bytes]] = []
    marker = f"marker-{uuid.uuid4().hex}".encode()
    marker_subject = f"test.marker.{uuid.uuid4().hex}"  # held by no stream

    async def main():
        client = await nats_client.connect(url)
        done = asyncio.Event()

        async def received(message):
            if message.data == marker:
                done.set()
            else:
                seen.append((message.subject, message.data))

        for subject in [*subjects, marker_subject]:
            await client.subscribe(subject, cb=received)
        await client.flush()

        def restore_and_close():
            try:
                restore()
            finally:
                connections.close_all()  # this worker thread's own database connection

        try:
            await asyncio.to_thread(restore_and_close)
        finally:
            await client.publish(marker_subject, marker)
            await asyncio.wait_for(done.wait(), 10)
            await client.close()

    asyncio.run(main())
    return seen


def test_a_restore_with_streams_never_resends_control_messages(own_nats, snapshots):
    restart = envelope(
        {
            "RestartNode": {
                "restart_id": str(uuid.uuid4()),
                "node_id": str(uuid.uuid4()),
                "node_name": "worker-1",
                "attempt": 1,
                "delay_ms": 0,
                "requested_by": "admin",
                "reason": "test",
            }
        }
    )
    history = [
        ("system.control", restart),
        ("system.control", envelope("Shutdown")),
        ("system.health", envelope({"Healthy": {}})),
        ("pool.management", envelope({"PoolResized": {"size": 3}})),
    ]

    async def publish(js):
        for subject, data in history:
            await js.publish(subject, data)

    on_nats(own_nats, publish)
    exported = export_snapshot(ExportOptions(streams=True, stream_names=["SYSTEM_EVENTS"], hive=False))
    [member] = [m for m in exported.manifest["members"] if m["kind"] == "stream"]
    assert member["messages"] == 4

    results = []
    seen = restore_watching(
        own_nats,
        ["system.control", "agent.command"],
        lambda: results.append(import_snapshot(exported.path, ImportOptions(replace=True, streams=True, hive=False))),
    )
    assert seen == []
    assert stream_contents(own_nats, "SYSTEM_EVENTS") == history[2:]
    [result] = results
    assert result.republished == {"SYSTEM_EVENTS": 2} and result.skipped == {"SYSTEM_EVENTS": 2}
    assert any("2 control and command messages left out" in line for line in result.lines())


def stream_member(name: str, records: list[tuple[str, bytes]]) -> tuple[dict[str, Any], bytes]:
    packer = msgpack.Packer(use_bin_type=True)
    raw = b"".join(packer.pack([index + 1, subject, None, data, None]) for index, (subject, data) in enumerate(records))
    described = {
        "name": f"streams/{name}.msgpack.zst",
        "kind": "stream",
        "component": "streams",
        "stream": name,
        "messages": len(records),
        "rows": len(records),
        "raw_size": len(raw),
    }
    return described, zstd(raw)


def test_a_crafted_member_cannot_publish_outside_its_streams_subjects_nor_purge(own_nats, snapshots):
    """A valid SYSTEM_EVENTS member first, then an AGENT_EVENTS member holding an agent.command
    Stop: refused in the plan, nothing published live, and neither stream purged."""
    stop = envelope({"Stop": {"agent_id": str(uuid.uuid4()), "graceful": False, "timeout": None}})
    agent = str(uuid.uuid4())
    present = [("system.health", b"present"), (f"agent.{agent}.events", b"present too")]

    async def publish(js):
        for subject, data in present:
            await js.publish(subject, data)

    on_nats(own_nats, publish)
    path = craft(
        snapshots / "command.tar",
        [
            stream_member("SYSTEM_EVENTS", [("pool.management", b"old")]),
            stream_member("AGENT_EVENTS", [(f"agent.{agent}.events", b"old"), ("agent.command", stop)]),
        ],
    )
    errors = []

    def restore():
        with pytest.raises(SnapshotError) as caught:
            import_snapshot(path, ImportOptions(replace=True, streams=True, hive=False))
        errors.append(caught.value)

    seen = restore_watching(own_nats, ["agent.command", "system.control"], restore)
    assert seen == []
    assert "'agent.command', which is not one of the stream's subjects" in str(errors[0])
    assert "nothing was changed" in str(errors[0])
    assert stream_contents(own_nats, "SYSTEM_EVENTS") == [present[0]]
    assert stream_contents(own_nats, "AGENT_EVENTS") == [present[1]]


def test_a_malformed_stream_record_refuses_before_any_purge(own_nats, snapshots):
    on_nats(own_nats, lambda js: js.publish("system.health", b"present"))
    described, _ = stream_member("SYSTEM_EVENTS", [])
    bad = msgpack.packb([1, "system.health", None, "not bytes", None]) + msgpack.packb(["x"])
    path = craft(snapshots / "record.tar", [({**described, "raw_size": len(bad), "messages": 2}, zstd(bad))])
    restore_refused(path, r"record 0 is not \[sequence, subject, headers, data, time\]", streams=True, hive=False)
    assert stream_contents(own_nats, "SYSTEM_EVENTS") == [("system.health", b"present")]
