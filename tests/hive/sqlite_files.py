"""Real SQLite files for the hive tests: old claude-flow schemas, plain sqlite3 access, alias swaps."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

HIVE_DATABASES = ["default", "hive", "hive_memory"]

# A hive.db as an older claude-flow wrote it: no session tables, collective_memory without
# accessed_at/access_count/compressed/size, role still nullable.
OLD_HIVE_SQL = """
CREATE TABLE swarms (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, objective TEXT, status TEXT DEFAULT 'active',
    queen_type TEXT DEFAULT 'strategic', created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY, swarm_id TEXT, name TEXT NOT NULL, type TEXT NOT NULL, role TEXT,
    status TEXT DEFAULT 'idle', capabilities TEXT, created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (swarm_id) REFERENCES swarms(id)
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, swarm_id TEXT, agent_id TEXT, description TEXT, status TEXT DEFAULT 'pending',
    priority INTEGER DEFAULT 5, result TEXT, created_at DATETIME DEFAULT CURRENT_TIMESTAMP, completed_at DATETIME,
    FOREIGN KEY (swarm_id) REFERENCES swarms(id), FOREIGN KEY (agent_id) REFERENCES agents(id)
);
CREATE TABLE collective_memory (
    id TEXT PRIMARY KEY, swarm_id TEXT, key TEXT NOT NULL, value TEXT, type TEXT DEFAULT 'knowledge',
    confidence REAL DEFAULT 1.0, created_by TEXT, created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (swarm_id) REFERENCES swarms(id)
);
CREATE TABLE consensus_decisions (
    id TEXT PRIMARY KEY, swarm_id TEXT, topic TEXT NOT NULL, decision TEXT, votes TEXT,
    algorithm TEXT DEFAULT 'majority', confidence REAL, created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (swarm_id) REFERENCES swarms(id)
);
INSERT INTO swarms (id, name, objective) VALUES ('swarm-old-1', 'old-hive', 'Keep the old files readable');
INSERT INTO swarms (id, name, objective, created_at, updated_at)
    VALUES ('swarm-old-2', 'iso-hive', 'ISO timestamps', '2025-01-02T03:04:05.678Z', 1735787045678);
INSERT INTO agents (id, swarm_id, name, type, role, status, capabilities)
    VALUES ('queen-swarm-old-1', 'swarm-old-1', 'Queen Coordinator', 'coordinator', 'queen', 'active', '["coordination"]');
INSERT INTO agents (id, swarm_id, name, type, role, capabilities)
    VALUES ('worker-swarm-old-1-0', 'swarm-old-1', 'Coder Worker 1', 'coder', 'worker', '["coding"]');
INSERT INTO agents (id, swarm_id, name, type, capabilities)
    VALUES ('worker-swarm-old-1-1', 'swarm-old-1', 'Tester Worker 2', 'tester', 'not json');
INSERT INTO tasks (id, swarm_id, agent_id, description) VALUES ('task-old-1', 'swarm-old-1', 'worker-swarm-old-1-0', 'Port the parser');
INSERT INTO collective_memory (id, swarm_id, key, value, type, confidence, created_by)
    VALUES ('memory-old-1', 'swarm-old-1', 'objective', 'Keep the old files readable', 'context', 0.9, 'queen-swarm-old-1');
INSERT INTO consensus_decisions (id, swarm_id, topic, decision, votes, confidence)
    VALUES ('consensus-old-1', 'swarm-old-1', 'Parser choice', 'approve', '{"queen-swarm-old-1": "approve"}', 1.0);
"""

# A memory.db before access tracking and TTLs.
OLD_MEMORY_SQL = """
CREATE TABLE memory_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value TEXT NOT NULL,
    namespace TEXT NOT NULL DEFAULT 'default', metadata TEXT,
    created_at INTEGER DEFAULT (strftime('%s', 'now')), updated_at INTEGER DEFAULT (strftime('%s', 'now')),
    UNIQUE(key, namespace)
);
INSERT INTO memory_entries (key, value, namespace) VALUES ('hooks/pre-task', '{"ok": true}', 'hooks');
"""


def write_sqlite(path: Path, script: str) -> Path:
    """Write a database file with a plain sqlite3 connection, as claude-flow would."""
    with sqlite3.connect(path) as db:
        db.executescript(script)
    db.close()
    return path


def sqlite_file_wrapper(alias: str, path: Path) -> BaseDatabaseWrapper:
    """A Django connection for ``alias`` on the file ``path`` (same settings otherwise)."""
    settings_dict = copy.deepcopy(connections[alias].settings_dict)
    settings_dict["NAME"] = str(path)
    return connections[alias].__class__(settings_dict, alias)


@contextmanager
def alias_on_file(alias: str, path: Path) -> Iterator[BaseDatabaseWrapper]:
    """Point ``alias`` at a real file for this thread, then put the test database back."""
    wrapper = sqlite_file_wrapper(alias, path)
    previous = connections[alias]
    connections[alias] = wrapper
    try:
        yield wrapper
    finally:
        connections[alias] = previous
        wrapper.close()


def raw_rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows read straight from a file with sqlite3, bypassing Django."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()
