"""Checks of the Hive Mind files claude-flow writes (CONTRACTS.md §5): readable, in WAL mode,
and queens and workers present.

The files are opened read-only with sqlite3, not through the console's own ``hive`` aliases:
connecting those creates a missing file and its tables (:mod:`hive.schema`), which would hide
the very fault this reports, and a check must never write.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from functools import partial
from pathlib import Path
from typing import Any

from django.db import connections

from mistersmith.operations.verify.matrix import DEGRADED, FAILED, PROBE_TIMEOUT, Row, error_text, judged, plural

FILES = (("hive", "hive.db"), ("hive_memory", "memory.db"))
WHERE_HINT = (
    "Point HIVE_MIND_DIR (or HIVE_DB_PATH, HIVE_MEMORY_DB_PATH) at claude-flow's .hive-mind; "
    "`claude-flow hive-mind init` makes the files."
)
row = partial(judged, "hive_mind")


def open_readonly(alias: str) -> tuple[str, Any, bool]:
    """Where the alias's database is, a DB-API connection to it, and whether the caller closes it:
    read-only on a real file; the alias's own connection for an in-memory database (the tests')."""
    name = str(connections[alias].settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        connections[alias].ensure_connection()
        return "in-memory test database", connections[alias].connection, False
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    return str(path), sqlite3.connect(uri, uri=True, timeout=PROBE_TIMEOUT), True


def hive_rows() -> list[Row]:
    rows = []
    for alias, label in FILES:
        try:
            where, db, owned = open_readonly(alias)
        except Exception as error:
            rows.append(row(f"{label} readable", "the file opens", error_text(error), bad=True, hint=WHERE_HINT))
            continue
        try:
            rows.extend(_file_rows(db, label, where))
        except Exception as error:
            rows.append(row(f"{label} readable", "the file answers", error_text(error), bad=True, hint=WHERE_HINT))
        finally:
            if owned:
                db.close()
    return rows


def _file_rows(db: Any, label: str, where: str) -> list[Row]:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    size = ""
    with contextlib.suppress(OSError):
        size = f", {Path(where).stat().st_size / 1_048_576:.1f} MB"
    (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    rows = [
        row(
            f"{label} readable",
            "the file opens and answers",
            f"{plural(len(tables), 'table')}{size} ({where})",
            bad=False,
        ),
        row(
            f"{label} WAL mode",
            "journal_mode wal",
            str(mode),
            bad=str(mode).lower() != "wal",
            status=DEGRADED,
            hint="Without WAL the console's reads and claude-flow's writes block each other: with the tool "
            f"stopped, run sqlite3 {label} 'PRAGMA journal_mode=WAL'.",
        ),
    ]
    if label == "hive.db":
        if "agents" not in tables:
            hint = "Not a claude-flow hive.db: check HIVE_DB_PATH."
            return [*rows, row("queens and workers", "an agents table", "no agents table", bad=True, hint=hint)]
        # Queens and workers are agents rows told apart by role; older files leave a worker's role NULL.
        queens, workers = db.execute(
            "SELECT coalesce(sum(role = 'queen'), 0), coalesce(sum(role IS NULL OR role <> 'queen'), 0) FROM agents"
        ).fetchone()
        rows.append(
            row(
                "queens and workers",
                "at least one queen and one worker",
                f"{plural(queens, 'queen')}, {plural(workers, 'worker')}",
                bad=not (queens and workers),
                status=DEGRADED,
                hint="No swarm has been spawned here yet: `claude-flow hive-mind spawn`.",
            )
        )
    elif "memory_entries" in tables:
        (entries,) = db.execute("SELECT count(*) FROM memory_entries").fetchone()
        rows.append(row("memory entries", "a memory_entries table", plural(entries, "entry", "entries"), bad=False))
    else:
        hint = "Not a claude-flow memory.db: check HIVE_MEMORY_DB_PATH."
        rows.append(row("memory entries", "a memory_entries table", "none", bad=True, status=FAILED, hint=hint))
    return rows
