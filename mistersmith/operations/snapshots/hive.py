"""The Hive Mind side of a snapshot: claude-flow's SQLite files, copied with SQLite's online
backup API both ways.

A plain file copy of a database in WAL mode can catch it between a write to the WAL and the
checkpoint, and misses what is still in the WAL; the backup API copies a consistent image
through SQLite's own locking, while claude-flow keeps writing. A restore goes the same way into
the target file, so a claude-flow process that has it open sees the new content rather than a
file replaced under its feet.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from mistersmith.operations.snapshots.format import CHUNK, SnapshotError, UnsupportedSnapshot, chunks

HIVE_FILES = {"hive.db": "HIVE_DB_PATH", "memory.db": "HIVE_MEMORY_DB_PATH"}


def hive_paths() -> dict[str, Path]:
    """The installation's Hive Mind files, by their name in a snapshot."""
    return {name: Path(getattr(settings, setting)) for name, setting in HIVE_FILES.items()}


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    return sqlite3.connect(path, timeout=10)


def backup(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` into ``target`` through the backup API."""
    with contextlib.closing(_connect(source, readonly=True)) as src, contextlib.closing(_connect(target)) as dst:
        src.backup(dst)


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table of a SQLite file (the manifest's counts, and the emptiness check)."""
    with contextlib.closing(_connect(path, readonly=True)) as db:
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            name: db.execute(f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
            for name in names
        }


def is_empty(path: Path) -> bool:
    """No file, an empty file, or no rows in any table."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    try:
        return not any(table_counts(path).values())
    except sqlite3.DatabaseError:
        return False  # unreadable: treat as holding something, never overwrite it silently


def export_file(source: Path, scratch: Path, target: IO[bytes], on_bytes: Callable[[int], object]) -> dict[str, Any]:
    """Copy ``source`` consistently into ``scratch``, then stream it to ``target``."""
    backup(source, scratch)
    counts = table_counts(scratch)
    with scratch.open("rb") as file:
        for data in chunks(file, CHUNK):
            target.write(data)
            on_bytes(len(data))
    return {"tables": counts, "rows": sum(counts.values()), "file_size": scratch.stat().st_size}


def unpack(source: IO[bytes], scratch: Path) -> None:
    """The snapshot's copy of a file, written out (as many bytes as the bounded ``source`` gives)
    and checked before anything is replaced; a file SQLite cannot read is an UnsupportedSnapshot."""
    with scratch.open("wb") as file:
        shutil.copyfileobj(source, file, CHUNK)
    try:
        with contextlib.closing(_connect(scratch, readonly=True)) as db:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as error:
        raise UnsupportedSnapshot(
            f"The Hive Mind file {scratch.name} is not a readable SQLite database ({error})."
        ) from error
    if result != "ok":
        raise UnsupportedSnapshot(f"The Hive Mind file {scratch.name} is damaged: {result}")


def restore_file(scratch: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        backup(scratch, target)
    except sqlite3.Error as error:
        raise SnapshotError(f"The Hive Mind file {target} could not be written ({error}).") from error
