"""Restoring a snapshot: plan (read the manifest, verify every checksum, compare schemas, look at
the target), then carry it out. Nothing is touched until the plan holds.

Order of a restore, and why:

1. The Hive Mind files are unpacked to scratch files and checked (SQLite's quick_check).
2. The tables, in ONE transaction: locked (and emptied with ``replace``), loaded with COPY,
   references to users that do not exist here set to NULL, bridge positions made to fit the
   target's streams, indexes and foreign keys put back (checking every row), sequences reset.
   Any error rolls all of it back.
3. The Hive Mind files are written into place with the backup API.
4. Only with ``streams``: each stream is emptied (with ``replace``; else it must be empty) and
   the snapshot's messages published again, then positions and the discovery store's stream
   sequences are translated to the new numbering, in a second short transaction. Every stream
   member was read and checked in the plan (step 0): a record that is malformed or on a subject
   outside its stream's configuration refuses the whole snapshot before anything (any table,
   any stream) is touched, and the emptiness of every stream is checked before the first purge.
   Messages on system.control and agent.command are never republished (a restore must not send
   the runtime a command): they are left out and counted in the plan and the result.

Bridge positions without ``streams``: if a target stream is the one the snapshot was taken
from (same creation time), positions are kept and the bridge, once restarted, applies the
events that came after the snapshot (a roll forward, like any replay). For another stream (a
new installation) they are moved to the stream's current end, and the discovery store's stream
sequences, which would collide with the new stream's numbering, are cleared.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from django.db import DatabaseError, transaction

from mistersmith.operations.snapshots import hive as snapshot_hive
from mistersmith.operations.snapshots import streams as snapshot_streams
from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.format import (
    SnapshotError,
    member_reader,
    open_archive,
    read_manifest,
    verify_members,
)
from mistersmith.operations.snapshots.progress import QUIET, Bar, Progress
from supervision import history as node_history

logger = logging.getLogger("mistersmith.snapshots")

# Columns holding a stream sequence that must be unique: they follow the stream's numbering
# (cleared for another stream, translated when the messages are republished). A column another
# version of the schema lacks is skipped.
SEQUENCE_COLUMNS = [
    ("agents", "Discovery", "stream_sequence", "DISCOVERIES"),
    ("agents", "SessionMessage", "stream_sequence", "AGENT_EVENTS"),
]


def _sequence_columns(stream: str) -> list[tuple[Any, str]]:
    from django.apps import apps
    from django.core.exceptions import FieldDoesNotExist

    found = []
    for app, model_name, column, owner in SEQUENCE_COLUMNS:
        model = apps.get_model(app, model_name)
        try:
            model._meta.get_field(column)
        except FieldDoesNotExist:
            continue
        if owner == stream:
            found.append((model, column))
    return found


class TargetNotEmpty(SnapshotError):
    """The installation holds state and ``replace`` was not given."""


class SchemaMismatch(SnapshotError):
    """The snapshot's tables do not fit this installation's schema."""


@dataclass
class ImportOptions:
    replace: bool = False
    streams: bool = False
    hive: bool = True
    progress: Progress = field(default_factory=lambda: QUIET)


@dataclass
class Plan:
    path: Path
    manifest: dict[str, Any]
    options: ImportOptions
    verified: bool
    target_tables: list[str]
    existing_rows: dict[str, int]
    not_empty: list[str]
    positions: dict[str, str]  # stream -> keep | rebase | renumber
    target_streams: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    stream_checks: dict[str, snapshot_streams.MemberCheck] = field(default_factory=dict)

    def members(self, kind: str) -> list[dict[str, Any]]:
        return [member for member in self.manifest["members"] if member["kind"] == kind]

    @property
    def refusal(self) -> str | None:
        """Why the restore cannot go ahead as asked, or None."""
        if self.not_empty and not self.options.replace:
            return (
                "This installation is not empty (" + ", ".join(self.not_empty) + "). "
                "Restore into an empty installation, or pass --replace to replace its state; nothing was changed."
            )
        return None

    def lines(self) -> list[str]:
        """What the restore would do, for --dry-run, the confirmation prompt and the admin page."""
        manifest = self.manifest
        lines = [
            f"Snapshot {self.path.name}: format {manifest['format_version']}, "
            f"console {manifest.get('console_version', '?')}, created {manifest.get('created_at', '?')}"
            + (f" by {manifest['created_by']}" if manifest.get("created_by") else ""),
            f"Checksums: all {len(manifest['members'])} members verified."
            if self.verified
            else "Checksums: verified when the restore starts.",
        ]
        lines += self.notes
        lines.append(
            "Target: empty."
            if not self.not_empty
            else f"Target holds state ({', '.join(self.not_empty)}): "
            + ("it will be REPLACED." if self.options.replace else "refused without --replace.")
        )
        for member in self.members("table"):
            current = self.existing_rows.get(member["table"], 0)
            replacing = f" (replacing {current:,})" if current else ""
            lines.append(f"  {member['component']}: {member['table']} {member['rows']:,} rows{replacing}")
        unrestored = [t for t in self.target_tables if t not in {m["table"] for m in self.members("table")}]
        for table in unrestored:
            lines.append(f"  {table}: not in the snapshot, left empty")
        for member in self.members("hive"):
            if self.options.hive:
                target = snapshot_hive.hive_paths()[member["file"]]
                lines.append(f"  hive: {member['file']} {member['rows']:,} rows -> {target}")
            else:
                lines.append(f"  hive: {member['file']} skipped")
        for member in self.members("stream"):
            if self.options.streams:
                purge = " (the stream is emptied first)" if self.options.replace else ""
                check = self.stream_checks.get(member["stream"])
                count = check.messages if check else member["messages"]
                lines.append(f"  streams: {member['stream']} {count:,} messages republished{purge}")
                if check and check.skipped:
                    lines.append(f"  streams: {member['stream']}: {_skipped_text(check.skipped_subjects)}")
            else:
                lines.append(f"  streams: {member['stream']} {member['messages']:,} messages not restored (--streams)")
        by_decision: dict[str, list[str]] = {}
        for stream, decision in sorted(self.positions.items()):
            by_decision.setdefault(decision, []).append(stream)
        for decision, streams in by_decision.items():
            lines.append(f"  bridge positions on {', '.join(streams)}: {POSITION_TEXT[decision]}")
        return lines


def _skipped_text(by_subject: dict[str, int]) -> str:
    counts = ", ".join(f"{count:,} on {subject}" for subject, count in sorted(by_subject.items()))
    return f"control and command messages left out ({counts}): a restore never re-sends them to the runtime"


POSITION_TEXT = {
    "keep": "kept (same stream, or it cannot be compared); the bridge continues from them",
    "rebase": "moved to the stream's current end (another stream than the snapshot's)",
    "renumber": "translated to the republished messages' new sequences",
}


@dataclass
class ImportResult:
    plan: Plan
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    cleared_references: dict[str, int] = field(default_factory=dict)
    republished: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    hive_files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"Restored {self.plan.path.name} in {self.seconds:.1f} s."]
        lines += [f"  {table}: {rows:,} rows" for table, rows in self.rows.items()]
        lines += [f"  hive: {name}" for name in self.hive_files]
        lines += [f"  streams: {name} {count:,} messages republished" for name, count in self.republished.items()]
        lines += [
            f"  streams: {name}: {count:,} messages refused by the server as duplicates"
            for name, count in self.duplicates.items()
            if count
        ]
        lines += [
            f"  streams: {name}: {count:,} control and command messages left out (never re-sent to the runtime)"
            for name, count in self.skipped.items()
            if count
        ]
        lines += [
            f"  {column}: {count:,} references to rows not in this installation set to NULL"
            for column, count in self.cleared_references.items()
        ]
        return lines


def plan_import(path: Path, options: ImportOptions | None = None, *, verify: bool = True) -> Plan:
    """Read and check a snapshot against this installation; changes nothing.

    Raises UnsupportedSnapshot (not a snapshot, newer format), ChecksumMismatch, SchemaMismatch.
    """
    options = options or ImportOptions()
    with open_archive(path) as tar:
        manifest = read_manifest(tar, path.name)
        if verify:
            total = sum(member.get("size", 0) for member in manifest["members"])
            with options.progress.bar("verifying", total=total, unit="B") as bar:
                verify_members(tar, manifest, bar.update)
    notes = _check_schema(manifest)
    snapshot_tables_ = [member["table"] for member in manifest["members"] if member["kind"] == "table"]
    installed = [spec.table for spec in snapshot_tables.state_tables()]
    present = snapshot_tables.existing_tables(installed)
    target_tables = [table for table in installed if table in present]
    target_tables += [table for table in snapshot_tables_ if table not in target_tables]
    existing_rows = snapshot_tables.exact_counts(snapshot_tables.tables_with_rows(target_tables))
    not_empty = [f"{table}: {rows:,} rows" for table, rows in existing_rows.items()]
    if options.hive:
        for member in manifest["members"]:
            if member["kind"] == "hive" and not snapshot_hive.is_empty(snapshot_hive.hive_paths()[member["file"]]):
                not_empty.append(f"hive file {member['file']}")
    stream_members = [member for member in manifest["members"] if member["kind"] == "stream"]
    names = sorted(set(manifest.get("streams") or snapshot_streams.STREAMS) | {m["stream"] for m in stream_members})
    target_streams = snapshot_streams.stream_identities(names)
    if options.streams and stream_members:
        if target_streams is None:
            raise SnapshotError("--streams was asked for, but NATS cannot be reached; nothing was changed.")
        not_empty += [
            f"stream {member['stream']}: {target_streams[member['stream']]['messages']:,} messages"
            for member in stream_members
            if (target_streams.get(member["stream"]) or {}).get("messages")
        ]
    if options.streams and not stream_members:
        notes.append("The snapshot holds no stream messages (it was taken without --streams).")
    positions = _position_decisions(manifest, target_streams, options, {m["stream"] for m in stream_members})
    if target_streams is None:
        notes.append("NATS cannot be reached: bridge positions are restored as they are.")
    plan = Plan(
        path, manifest, options, verify, target_tables, existing_rows, not_empty, positions, target_streams, notes
    )
    if options.streams and stream_members:
        with open_archive(path) as tar:
            plan.stream_checks = _check_streams(tar, plan)
    return plan


def _check_streams(tar: Any, plan: Plan) -> dict[str, snapshot_streams.MemberCheck]:
    """Every stream member read through and checked against its stream's configured subjects
    (SnapshotError otherwise); publishes nothing, purges nothing."""
    members = plan.members("stream")
    subjects = snapshot_streams.with_jetstream(
        lambda js: snapshot_streams.configured_subjects(js, [m["stream"] for m in members]), timeout=30
    )
    checks = {}
    for member in members:
        with member_reader(tar, member, plan.manifest["compression"]) as reader:
            checks[member["stream"]] = snapshot_streams.check_member(member["name"], reader, subjects[member["stream"]])
    return checks


def _check_schema(manifest: dict[str, Any]) -> list[str]:
    """Refuse a snapshot whose schema this installation does not have; note a newer one here."""
    snapshot_migrations = manifest.get("database", {}).get("migrations", {})
    here = snapshot_tables.applied_migrations()
    missing, newer = [], []
    for app in snapshot_tables.STATE_APPS:
        theirs, ours = set(snapshot_migrations.get(app, [])), set(here.get(app, []))
        missing += [f"{app}.{name}" for name in sorted(theirs - ours)]
        newer += [f"{app}.{name}" for name in sorted(ours - theirs)]
    if missing:
        raise SchemaMismatch(
            "The snapshot was taken at a newer schema: migrations "
            + ", ".join(missing)
            + " are not applied here. Upgrade the console, run `manage.py migrate`, then restore; nothing was changed."
        )
    problems: list[str] = []
    tables = [member for member in manifest["members"] if member["kind"] == "table"]
    present = snapshot_tables.existing_tables(member["table"] for member in tables)
    state = {spec.table for spec in snapshot_tables.state_tables()}
    unknown_files = {m.get("file") for m in manifest["members"] if m["kind"] == "hive"} - set(snapshot_hive.HIVE_FILES)
    problems += [f"{name!r} is not a Hive Mind file this console knows" for name in sorted(map(str, unknown_files))]
    for member in tables:
        if member["table"] not in state:
            problems.append(f"{member['table']} is not a state table here (users and the admin log are never restored)")
            continue
        if member["table"] not in present:
            problems.append(f"table {member['table']} does not exist here")
            continue
        absent = set(member["columns"]) - set(snapshot_tables.table_columns(member["table"]))
        if absent:
            problems.append(f"{member['table']} has no column {', '.join(sorted(absent))} here")
    kinds = {member.get("kind") for member in manifest["members"]} - {"table", "stream", "hive"}
    problems += [f"unknown member kind {kind!r}" for kind in sorted(map(str, kinds))]
    if problems:
        raise SchemaMismatch("The snapshot does not fit this schema: " + "; ".join(problems) + ". Nothing was changed.")
    if newer:
        return [
            f"Schema: this installation has migrations the snapshot predates ({', '.join(newer)}); "
            "columns added since take their defaults."
        ]
    return ["Schema: the snapshot's migrations match this installation's."]


def _position_decisions(
    manifest: dict[str, Any],
    target: dict[str, Any] | None,
    options: ImportOptions,
    republished: set[str],
) -> dict[str, str]:
    theirs = manifest.get("streams") or {}
    decisions = {}
    for stream in sorted(set(theirs) | republished):
        if options.streams and stream in republished:
            decisions[stream] = "renumber"
        elif target is None or not theirs.get(stream):
            decisions[stream] = "keep"  # nothing to compare with: the bridge's own check applies
        else:
            same = target.get(stream) and target[stream]["created"] == theirs[stream]["created"]
            decisions[stream] = "keep" if same else "rebase"
    return decisions


class _Counting:
    """A readable file that reports how many bytes were read (a progress bar over compressed bytes)."""

    def __init__(self, file: IO[bytes], bar: Bar) -> None:
        self.file, self.bar = file, bar

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.bar.update(len(data))
        return data

    def readable(self) -> bool:
        return True


def import_snapshot(path: Path, options: ImportOptions | None = None) -> ImportResult:
    """Plan, then restore; raises TargetNotEmpty when the target holds state without ``replace``."""
    plan = plan_import(path, options)
    return execute(plan)


def execute(plan: Plan) -> ImportResult:
    """Carry out a plan made by plan_import (checksums are verified here if the plan did not)."""
    if plan.refusal:
        raise TargetNotEmpty(plan.refusal)
    options = plan.options
    started = time.perf_counter()
    result = ImportResult(plan)
    with open_archive(plan.path) as tar:
        manifest = read_manifest(tar, plan.path.name)
        if not plan.verified or manifest != plan.manifest:
            verify_members(tar, manifest)
            if options.streams and plan.members("stream"):
                plan.stream_checks = _check_streams(tar, plan)
        codec = manifest["compression"]
        with tempfile.TemporaryDirectory(prefix="mistersmith-restore-") as scratch_dir:
            scratch = {}
            if options.hive:
                for member in plan.members("hive"):
                    scratch[member["file"]] = Path(scratch_dir) / member["file"]
                    with member_reader(tar, member, codec) as reader:
                        snapshot_hive.unpack(reader, scratch[member["file"]])
            _restore_tables(tar, plan, codec, result)
            for name, file in scratch.items():
                snapshot_hive.restore_file(file, snapshot_hive.hive_paths()[name])
                result.hive_files.append(name)
        if options.streams and plan.members("stream"):
            try:
                _restore_streams(tar, plan, codec, result)
            except SnapshotError as error:
                raise SnapshotError(
                    f"The tables and Hive Mind files were restored, but the streams were not: {error} "
                    "Run the import again with --replace --streams."
                ) from error
    result.seconds = time.perf_counter() - started
    logger.info(
        "restored %s in %.1f s (replace=%s, streams=%s)",
        plan.path.name,
        result.seconds,
        options.replace,
        options.streams,
    )
    return result


def _restore_tables(tar: Any, plan: Plan, codec: str, result: ImportResult) -> None:
    tables = plan.target_tables
    specs = {spec.table: spec for spec in snapshot_tables.state_tables()}
    try:
        _load_tables(tar, plan, codec, result, tables, specs)
    except (DatabaseError, psycopg.Error) as error:
        raise SnapshotError(
            f"The tables could not be restored ({str(error).strip().splitlines()[0][:300]}); "
            "the transaction was rolled back and nothing was changed."
        ) from error


def _load_tables(tar: Any, plan: Plan, codec: str, result: ImportResult, tables: list[str], specs: dict) -> None:
    progress = plan.options.progress
    with transaction.atomic():
        node_history.pause_recording()  # the snapshot carries its history; the load is no change
        blocked = snapshot_tables.lock_and_empty(tables, replace=plan.options.replace)
        if blocked:
            raise TargetNotEmpty(
                f"This installation is not empty ({', '.join(blocked)}): state was written since the check. "
                "Nothing was changed."
            )
        keys = snapshot_tables.foreign_keys(tables)
        indexes = snapshot_tables.secondary_indexes(tables)
        snapshot_tables.drop_constraints(keys, indexes)
        for member in plan.members("table"):
            with (
                progress.bar(member["table"], total=member["size"], unit="B") as bar,
                member_reader(tar, member, codec, wrap=lambda raw, bar=bar: _Counting(raw, bar)) as reader,
            ):
                snapshot_tables.copy_in(member["table"], member["columns"], reader)
            result.rows[member["table"]] = member["rows"]
        result.cleared_references = snapshot_tables.clear_dangling(keys, set(tables))
        _fit_positions(plan)
        with progress.bar("indexes and foreign keys", total=len(indexes) + len(keys), unit="steps"):
            snapshot_tables.restore_constraints(keys, indexes)
        snapshot_tables.reset_sequences([specs[table].model for table in tables if table in specs])
        snapshot_tables.analyze(tables)
        node_history.record_missing()  # a snapshot without history: its nodes are known from now


def _fit_positions(plan: Plan) -> None:
    from mistersmith.live.models import BridgePosition

    for stream, decision in plan.positions.items():
        if decision != "rebase":
            continue
        target = (plan.target_streams or {}).get(stream)
        rebased = target["last_seq"] if target else 0
        BridgePosition.objects.filter(stream=stream).update(
            sequence=rebased, framed_sequence=rebased, unframed_results={}
        )
        for model, column in _sequence_columns(stream):
            model.objects.exclude(**{column: None}).update(**{column: None})


def _restore_streams(tar: Any, plan: Plan, codec: str, result: ImportResult) -> None:
    renumberings: dict[str, snapshot_streams.Renumbering] = {}

    async def work(js: Any) -> None:
        # Every refusal before the first purge: a refused restore leaves every stream as it was.
        for member in plan.members("stream"):
            name = member["stream"]
            if not plan.options.replace and not await snapshot_streams.stream_is_empty(js, name):
                raise TargetNotEmpty(f"Stream {name} is not empty; pass --replace to empty it first.")
        for member in plan.members("stream"):
            name = member["stream"]
            with (
                plan.options.progress.bar(name, total=member["messages"] or None, unit="msgs") as bar,
                member_reader(tar, member, codec) as reader,
            ):
                renumberings[name] = await snapshot_streams.republish(
                    js, name, reader, purge=plan.options.replace, on_message=bar.update
                )
            result.republished[name] = len(renumberings[name].new)
            result.duplicates[name] = renumberings[name].duplicates
            result.skipped[name] = renumberings[name].skipped

    snapshot_streams.with_jetstream(work)
    _renumber(renumberings)


def _renumber(renumberings: dict[str, snapshot_streams.Renumbering]) -> None:
    """Positions and unique sequence columns in the republished streams' numbering."""
    from mistersmith.live.models import BridgePosition

    with transaction.atomic():
        for position in BridgePosition.objects.select_for_update().filter(stream__in=list(renumberings)):
            new = renumberings[position.stream].position(position.sequence)
            # frames are for the pages watching now, not for a restored history: nothing to frame again
            BridgePosition.objects.filter(pk=position.pk).update(sequence=new, framed_sequence=new, unframed_results={})
        for stream, renumbering in renumberings.items():
            for model, column in _sequence_columns(stream):
                old = list(model.objects.exclude(**{column: None}).values_list("pk", column).iterator())
                # Cleared first: a new number may equal another row's old one (the column is unique).
                model.objects.exclude(**{column: None}).update(**{column: None})
                changed = [model(pk=pk, **{column: renumbering.exact(sequence)}) for pk, sequence in old]
                model.objects.bulk_update(
                    [row for row in changed if getattr(row, column) is not None], [column], batch_size=1000
                )
