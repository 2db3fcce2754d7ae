"""Writing a snapshot: every table of the state apps, optionally the streams' retained messages,
and the Hive Mind files, into one archive (see snapshot_format for its shape).

The tables are read in one REPEATABLE READ, READ ONLY transaction: they are one consistent
picture (the bridge positions agree with the projections they describe) while the runtime and
the bridge keep writing. Each table goes out through COPY, a chunk at a time, compressed and
hashed on the way to a spool file, so memory does not grow with the data. The streams are read
after the tables: they then hold at least every event the positions refer to.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.db import connection, transaction

from mistersmith.operations.snapshots import hive as snapshot_hive
from mistersmith.operations.snapshots import streams as snapshot_streams
from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.format import (
    CODECS,
    DEFAULT_CODEC,
    FORMAT,
    FORMAT_VERSION,
    CountingWriter,
    HashingWriter,
    SnapshotError,
    compressed_writer,
    console_version,
    member_name,
    snapshot_dir,
    write_archive,
)
from mistersmith.operations.snapshots.progress import QUIET, Progress

DEFAULT_STREAM_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class ExportOptions:
    output: Path | None = None  # a file, a directory, or None for the snapshot directory
    streams: bool = False
    stream_names: list[str] | None = None  # the contract's four by default
    stream_max_bytes: int | None = DEFAULT_STREAM_MAX_BYTES  # per stream; None: no cap
    compression: str = DEFAULT_CODEC
    hive: bool = True
    created_by: str = ""
    progress: Progress = field(default_factory=lambda: QUIET)


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float


def default_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"mistersmith-snapshot-{now:%Y%m%dT%H%M%S}Z.tar"


def _target(output: Path | None) -> Path:
    # A directory: the snapshot directory, an existing one, or a new path without a file suffix.
    folder = snapshot_dir() if output is None else output if output.is_dir() or not output.suffix else None
    if folder is None:
        assert output is not None
        output.parent.mkdir(parents=True, exist_ok=True)
        return output
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / default_name()
    number = 2
    while path.exists():
        path = folder / f"{default_name().removesuffix('.tar')}-{number}.tar"
        number += 1
    return path


class Spool:
    """Members written to files beside the archive until the manifest (their checksums) is known."""

    def __init__(self, directory: Path, codec: str) -> None:
        self.directory = directory
        self.codec = codec
        self.files: dict[str, Path] = {}
        self.members: list[dict[str, Any]] = []

    @contextmanager
    def member(self, kind: str, name: str, **described: Any) -> Iterator[tuple[IO[bytes], dict[str, Any]]]:
        """A file to write one member's raw content to; it is compressed, hashed and described."""
        member_path = member_name(kind, name, self.codec)
        path = self.directory / member_path.replace("/", "__")
        member: dict[str, Any] = {"name": member_path, "kind": kind, **described}
        with path.open("wb") as raw:
            hashing = HashingWriter(raw)
            with compressed_writer(hashing, self.codec) as writer:
                counting = CountingWriter(writer)
                yield counting, member  # type: ignore[misc]
        member["raw_size"] = counting.size  # the restore decompresses it to exactly this, never more
        member["size"] = hashing.size
        member["sha256"] = hashing.sha256.hexdigest()
        self.files[member_path] = path
        self.members.append(member)


def export_snapshot(options: ExportOptions | None = None) -> ExportResult:
    """Write a snapshot; returns where, and its manifest."""
    options = options or ExportOptions()
    if options.compression not in CODECS:
        raise SnapshotError(f"Unknown compression {options.compression!r}; use one of {', '.join(CODECS)}.")
    started = time.perf_counter()
    path = _target(options.output)
    spool_dir = path.parent / f".{path.name}.partial"
    shutil.rmtree(spool_dir, ignore_errors=True)  # left by an export that was killed
    spool_dir.mkdir(mode=0o700)
    try:
        spool = Spool(spool_dir, options.compression)
        identities = snapshot_streams.stream_identities(options.stream_names)
        if options.streams and identities is None:
            raise SnapshotError("--streams was asked for, but NATS cannot be reached; no snapshot was written.")
        database = _export_tables(spool, options.progress)
        if options.streams:
            _export_streams(spool, options)
        if options.hive:
            _export_hive(spool, spool_dir, options.progress)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "console_version": console_version(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "created_by": options.created_by,
            "compression": options.compression,
            "database": database,
            "streams": identities,
            "components": _components(spool.members),
            "members": spool.members,
        }
        partial = path.parent / f".{path.name}.tmp"
        write_archive(partial, manifest, spool.files)
        partial.chmod(0o600)  # the whole state of the installation: not for other local users
        os.replace(partial, path)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
        (path.parent / f".{path.name}.tmp").unlink(missing_ok=True)
    return ExportResult(path, manifest, time.perf_counter() - started)


def _export_tables(spool: Spool, progress: Progress) -> dict[str, Any]:
    tables = snapshot_tables.state_tables()
    nested = connection.in_atomic_block  # inside a caller's transaction (a test's): its isolation stands
    with transaction.atomic():
        if not nested:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        present = snapshot_tables.existing_tables(spec.table for spec in tables)
        database = {
            "server_version": snapshot_tables.server_version(),
            "migrations": snapshot_tables.applied_migrations(),
        }
        for spec in tables:
            if spec.table not in present:
                continue
            columns = snapshot_tables.table_columns(spec.table)
            total = snapshot_tables.estimated_rows(spec.table)
            with (
                progress.bar(spec.table, total=total or None) as bar,
                spool.member("table", spec.table, component=spec.component, table=spec.table, columns=columns) as (
                    writer,
                    member,
                ),
            ):
                member["rows"] = snapshot_tables.copy_out(spec.table, columns, writer, bar.update)
    return database


def _export_streams(spool: Spool, options: ExportOptions) -> None:
    async def work(js: Any) -> None:
        await snapshot_streams.ensure_streams(js)
        for name in options.stream_names or list(snapshot_streams.STREAMS):
            info = await js.stream_info(name)
            with (
                options.progress.bar(name, total=info.state.messages or None, unit="msgs") as bar,
                spool.member("stream", name, component="streams", stream=name) as (writer, member),
            ):
                member.update(
                    await snapshot_streams.export_stream(js, name, writer, options.stream_max_bytes, bar.update)
                )
                member["rows"] = member["messages"]

    snapshot_streams.with_jetstream(work)


def _export_hive(spool: Spool, scratch_dir: Path, progress: Progress) -> None:
    for name, source in snapshot_hive.hive_paths().items():
        if not source.exists():
            continue
        scratch = scratch_dir / f"copy-{name}"
        with (
            progress.bar(name, unit="B") as bar,
            spool.member("hive", name, component="hive", file=name) as (writer, member),
        ):
            member.update(snapshot_hive.export_file(source, scratch, writer, bar.update))
        scratch.unlink()


def _components(members: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per component: its rows (messages for streams) and members, for the manifest's summary."""
    components: dict[str, dict[str, Any]] = {}
    for member in members:
        entry = components.setdefault(member["component"], {"rows": 0, "members": []})
        entry["rows"] += member.get("rows", 0)
        entry["members"].append(member["name"])
    return components
