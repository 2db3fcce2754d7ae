"""The claude-flow hive-mind schema, created on first connection to a new file.

The console reads files claude-flow writes, so the tables below mirror claude-flow's own
``CREATE TABLE IF NOT EXISTS`` statements (``hive-mind init``/``spawn`` for ``hive.db``, the
hive-mind session manager for the ``session*`` tables, the SQLite memory store for
``memory.db``). They are only ever used to create a table that is *missing*: an existing
file keeps its tables exactly as claude-flow made them, whatever the tool version (the models
cope with absent columns, see :mod:`hive.introspection`). No ALTER, no migration.

Each hive connection is prepared as it opens (Django's ``connection_created`` signal): WAL
journal mode, as claude-flow uses, so the console reads while the tool writes, then the
missing tables.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from hive.routers import HIVE_ALIASES, HIVE_DB, MEMORY_DB

logger = logging.getLogger(__name__)

# Table name -> statements creating it and its indexes, in creation order (referenced tables first).
HIVE_TABLES: dict[str, tuple[str, ...]] = {
    "swarms": (
        """CREATE TABLE IF NOT EXISTS swarms (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            objective TEXT,
            status TEXT DEFAULT 'active',
            queen_type TEXT DEFAULT 'strategic',
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
        )""",
    ),
    "agents": (
        """CREATE TABLE IF NOT EXISTS agents (
            id TEXT PRIMARY KEY,
            swarm_id TEXT NOT NULL,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT 'worker',
            status TEXT DEFAULT 'idle',
            capabilities TEXT,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (swarm_id) REFERENCES swarms(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_agents_swarm ON agents(swarm_id)",
    ),
    "tasks": (
        """CREATE TABLE IF NOT EXISTS tasks (
            id TEXT PRIMARY KEY,
            swarm_id TEXT NOT NULL,
            agent_id TEXT,
            description TEXT,
            status TEXT DEFAULT 'pending',
            priority INTEGER DEFAULT 5,
            result TEXT,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            completed_at DATETIME,
            FOREIGN KEY (swarm_id) REFERENCES swarms(id),
            FOREIGN KEY (agent_id) REFERENCES agents(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_tasks_swarm ON tasks(swarm_id)",
        "CREATE INDEX IF NOT EXISTS idx_tasks_agent ON tasks(agent_id)",
    ),
    "collective_memory": (
        """CREATE TABLE IF NOT EXISTS collective_memory (
            id TEXT PRIMARY KEY,
            swarm_id TEXT,
            key TEXT NOT NULL,
            value TEXT,
            type TEXT DEFAULT 'knowledge',
            confidence REAL DEFAULT 1.0,
            created_by TEXT,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            accessed_at DATETIME,
            access_count INTEGER DEFAULT 0,
            compressed INTEGER DEFAULT 0,
            size INTEGER DEFAULT 0,
            FOREIGN KEY (swarm_id) REFERENCES swarms(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_collective_memory_swarm_key ON collective_memory(swarm_id, key)",
    ),
    "consensus_decisions": (
        """CREATE TABLE IF NOT EXISTS consensus_decisions (
            id TEXT PRIMARY KEY,
            swarm_id TEXT,
            topic TEXT NOT NULL,
            decision TEXT,
            votes TEXT,
            algorithm TEXT DEFAULT 'majority',
            confidence REAL,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (swarm_id) REFERENCES swarms(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_consensus_swarm ON consensus_decisions(swarm_id)",
    ),
    "sessions": (
        """CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,
            swarm_id TEXT NOT NULL,
            swarm_name TEXT NOT NULL,
            objective TEXT,
            status TEXT DEFAULT 'active',
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            paused_at DATETIME,
            resumed_at DATETIME,
            completion_percentage REAL DEFAULT 0,
            checkpoint_data TEXT,
            metadata TEXT,
            parent_pid INTEGER,
            child_pids TEXT,
            FOREIGN KEY (swarm_id) REFERENCES swarms(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_sessions_swarm ON sessions(swarm_id)",
    ),
    "session_checkpoints": (
        """CREATE TABLE IF NOT EXISTS session_checkpoints (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            checkpoint_name TEXT NOT NULL,
            checkpoint_data TEXT,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (session_id) REFERENCES sessions(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_session_checkpoints_session ON session_checkpoints(session_id)",
    ),
    "session_logs": (
        """CREATE TABLE IF NOT EXISTS session_logs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
            log_level TEXT DEFAULT 'info',
            message TEXT,
            agent_id TEXT,
            data TEXT,
            FOREIGN KEY (session_id) REFERENCES sessions(id)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_session_logs_session ON session_logs(session_id)",
    ),
}

MEMORY_TABLES: dict[str, tuple[str, ...]] = {
    "memory_entries": (
        """CREATE TABLE IF NOT EXISTS memory_entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            namespace TEXT NOT NULL DEFAULT 'default',
            metadata TEXT,
            created_at INTEGER DEFAULT (strftime('%s', 'now')),
            updated_at INTEGER DEFAULT (strftime('%s', 'now')),
            accessed_at INTEGER DEFAULT (strftime('%s', 'now')),
            access_count INTEGER DEFAULT 0,
            ttl INTEGER,
            expires_at INTEGER,
            UNIQUE(key, namespace)
        )""",
        "CREATE INDEX IF NOT EXISTS idx_memory_namespace ON memory_entries(namespace)",
        "CREATE INDEX IF NOT EXISTS idx_memory_expires ON memory_entries(expires_at)",
        "CREATE INDEX IF NOT EXISTS idx_memory_accessed ON memory_entries(accessed_at)",
    ),
}

SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {HIVE_DB: HIVE_TABLES, MEMORY_DB: MEMORY_TABLES}


def existing_tables(db: sqlite3.Connection) -> set[str]:
    """Names of the tables in an SQLite database (any DB-API connection to SQLite)."""
    cursor = db.cursor()
    try:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()


def create_missing_tables(db: sqlite3.Connection, tables: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Create the tables of ``tables`` that ``db`` lacks; return their names.

    Existing tables are left alone, even when their columns differ: they are claude-flow's.
    Only a table that is created also gets its indexes.
    """
    missing = [name for name in tables if name not in existing_tables(db)]
    cursor = db.cursor()
    try:
        for name in missing:
            for statement in tables[name]:
                cursor.execute(statement)
    finally:
        cursor.close()
    if missing and db.in_transaction:
        db.commit()
    return missing


def enable_wal(db: sqlite3.Connection) -> str:
    """Switch a file database to WAL journal mode (it sticks to the file); return the mode now in force."""
    cursor = db.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        return str(mode).lower()
    finally:
        cursor.close()


def prepare_connection(connection: BaseDatabaseWrapper) -> list[str]:
    """WAL mode (file databases only) and the missing tables for a hive alias; return the tables created.

    Any other alias or vendor is left untouched. Runs on the raw DB-API connection, outside
    Django's transaction bookkeeping, while the connection is still in autocommit.
    """
    tables = SCHEMAS.get(connection.alias)
    if tables is None or connection.vendor != "sqlite":
        return []
    db = connection.connection
    if not connection.is_in_memory_db():
        try:
            enable_wal(db)
        except sqlite3.OperationalError as exc:  # e.g. another process holds the file: try next time
            logger.warning("Hive database %r stays in its journal mode for now: %s", connection.alias, exc)
    return create_missing_tables(db, tables)


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: prepare the hive aliases, ignore every other connection.

    A file the console cannot write (read-only mount, lock held too long) is still worth
    reading, so a failure is logged rather than raised.
    """
    if connection.alias not in HIVE_ALIASES:
        return
    try:
        created = prepare_connection(connection)
    except (sqlite3.Error, DatabaseError) as exc:
        logger.warning("Could not prepare hive database %r: %s", connection.alias, exc)
        return
    if created:
        logger.info("Created hive tables in %r: %s", connection.alias, ", ".join(created))


def is_file_name(name: Any) -> bool:
    """Whether a SQLite NAME setting is a plain file path (not in-memory, not a ``file:`` URI)."""
    text = str(name or "")
    return bool(text) and text != ":memory:" and "mode=memory" not in text and not text.startswith("file:")


def ensure_database_dirs(databases: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Create the missing parent directories of the hive files; return those created.

    SQLite creates a missing file but not its directory (``.hive-mind/`` on a fresh install),
    so this runs before any connection opens (``HiveConfig.ready``).
    """
    databases = settings.DATABASES if databases is None else databases
    created = []
    for alias in HIVE_ALIASES:
        name = databases.get(alias, {}).get("NAME")
        if not is_file_name(name):
            continue
        parent = Path(name).expanduser().parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True)
            created.append(parent)
    return created
