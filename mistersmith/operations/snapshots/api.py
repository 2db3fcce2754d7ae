"""Snapshots of the whole console state, and restoring them (the seed's "state export utilities"
and "rollback procedures").

The one entry point for commands and pages: ``export_snapshot`` writes an archive,
``plan_import`` / ``execute`` (or ``import_snapshot``) restore one, and ``list_snapshots`` /
``resolve`` find them in the snapshot directory (setting ``SNAPSHOT_DIR``). The work is split by
part: snapshot_format (the archive), snapshot_tables (PostgreSQL), snapshot_streams (JetStream),
snapshot_hive (the SQLite files), snapshot_export and snapshot_import (the orchestration).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistersmith.operations.snapshots.export import ExportOptions, ExportResult, export_snapshot
from mistersmith.operations.snapshots.format import (
    NAME_PATTERN,
    ChecksumMismatch,
    SnapshotError,
    UnsupportedSnapshot,
    open_archive,
    read_manifest,
    snapshot_dir,
)
from mistersmith.operations.snapshots.restore import (
    ImportOptions,
    ImportResult,
    Plan,
    SchemaMismatch,
    TargetNotEmpty,
    execute,
    import_snapshot,
    plan_import,
)

__all__ = [
    "ChecksumMismatch",
    "ExportOptions",
    "ExportResult",
    "ImportOptions",
    "ImportResult",
    "Plan",
    "SchemaMismatch",
    "SnapshotError",
    "SnapshotFile",
    "TargetNotEmpty",
    "UnsupportedSnapshot",
    "execute",
    "export_snapshot",
    "import_snapshot",
    "list_snapshots",
    "locate",
    "plan_import",
    "resolve",
    "snapshot_dir",
]


@dataclass(frozen=True)
class SnapshotFile:
    """A snapshot in the directory, with its manifest (or why it could not be read)."""

    name: str
    path: Path
    size: int
    modified: dt.datetime
    manifest: dict[str, Any] | None
    error: str = ""

    @property
    def created_at(self) -> str:
        return (self.manifest or {}).get("created_at", "")

    @property
    def components(self) -> dict[str, Any]:
        return (self.manifest or {}).get("components", {})


def list_snapshots(directory: Path | None = None) -> list[SnapshotFile]:
    """The directory's snapshots, newest first; reading each costs its manifest only."""
    directory = directory or snapshot_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if not path.is_file() or not NAME_PATTERN.fullmatch(path.name):
            continue
        stat = path.stat()
        manifest, error = None, ""
        try:
            with open_archive(path) as tar:
                manifest = read_manifest(tar, path.name)
        except SnapshotError as problem:
            error = str(problem)
        modified = dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.UTC)
        found.append(SnapshotFile(path.name, path, stat.st_size, modified, manifest, error))
    return sorted(found, key=lambda snapshot: snapshot.modified, reverse=True)


def resolve(name: str, directory: Path | None = None) -> Path:
    """The path of the snapshot called ``name`` in the directory; SnapshotError for a name that is
    not a plain snapshot file name or not there (no path tricks reach outside the directory)."""
    directory = (directory or snapshot_dir()).resolve()
    if not NAME_PATTERN.fullmatch(name):
        raise SnapshotError(f"{name!r} is not a snapshot file name.")
    path = (directory / name).resolve()
    if path.parent != directory or not path.is_file():
        raise SnapshotError(f"There is no snapshot {name!r} in {directory}.")
    return path


def locate(argument: str) -> Path:
    """What a command was given: a path to a snapshot, or a snapshot's name in the directory."""
    path = Path(argument)
    if not path.exists() and "/" not in argument:
        path = resolve(argument)
    if not path.is_file():
        raise SnapshotError(f"There is no file {path}.")
    return path
