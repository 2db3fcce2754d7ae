"""The claude-flow schema is created on new files only, in WAL mode, and on hive connections only."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connections

from hive.schema import (
    HIVE_TABLES,
    MEMORY_TABLES,
    create_missing_tables,
    enable_wal,
    ensure_database_dirs,
    existing_tables,
)
from tests.hive.sqlite_files import (
    HIVE_DATABASES,
    OLD_MEMORY_SQL,
    raw_rows,
    sqlite_file_wrapper,
    write_sqlite,
)


def columns(path, table):
    return [row[1] for row in raw_rows(path, f"PRAGMA table_info({table})")]


def test_schema_function_creates_every_table_on_a_fresh_file(tmp_path):
    path = tmp_path / "hive.db"
    db = sqlite3.connect(path)
    try:
        assert create_missing_tables(db, HIVE_TABLES) == list(HIVE_TABLES)
        assert create_missing_tables(db, HIVE_TABLES) == []  # idempotent
    finally:
        db.close()
    assert set(HIVE_TABLES) <= {row[0] for row in raw_rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert columns(path, "swarms") == ["id", "name", "objective", "status", "queen_type", "created_at", "updated_at"]
    assert columns(path, "collective_memory")[-4:] == ["accessed_at", "access_count", "compressed", "size"]
    defaults = {row[1]: row[4] for row in raw_rows(path, "PRAGMA table_info(tasks)")}
    assert defaults["priority"] == "5"


def test_memory_schema_has_unix_timestamps_and_a_unique_key_per_namespace(tmp_path):
    path = tmp_path / "memory.db"
    db = sqlite3.connect(path)
    try:
        create_missing_tables(db, MEMORY_TABLES)
        db.execute("INSERT INTO memory_entries (key, value) VALUES ('k', 'v')")
        db.execute("INSERT INTO memory_entries (key, value, namespace) VALUES ('k', 'v', 'other')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO memory_entries (key, value) VALUES ('k', 'again')")
        namespace, created_at, access_count = db.execute(
            "SELECT namespace, created_at, access_count FROM memory_entries WHERE id = 1"
        ).fetchone()
    finally:
        db.close()
    assert namespace == "default"
    assert isinstance(created_at, int) and created_at > 1_600_000_000
    assert access_count == 0


def test_existing_tables_are_left_as_claude_flow_made_them(tmp_path):
    path = write_sqlite(tmp_path / "memory.db", OLD_MEMORY_SQL)
    before = columns(path, "memory_entries")
    db = sqlite3.connect(path)
    try:
        assert create_missing_tables(db, MEMORY_TABLES) == []
    finally:
        db.close()
    assert columns(path, "memory_entries") == before
    assert "ttl" not in before


def test_enable_wal_sticks_to_the_file(tmp_path):
    path = tmp_path / "hive.db"
    db = sqlite3.connect(path)
    try:
        assert enable_wal(db) == "wal"
        assert enable_wal(db) == "wal"
    finally:
        db.close()
    assert raw_rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_hive_connection_opening_on_a_new_file_gets_wal_and_the_schema(tmp_path, django_db_blocker):
    hive_path, memory_path = tmp_path / "hive.db", tmp_path / "memory.db"
    hive, memory = sqlite_file_wrapper("hive", hive_path), sqlite_file_wrapper("hive_memory", memory_path)
    with django_db_blocker.unblock():
        try:
            hive.ensure_connection()  # connection_created does the work
            memory.ensure_connection()
        finally:
            hive.close()
            memory.close()
    assert raw_rows(hive_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw_rows(memory_path, "PRAGMA journal_mode") == [("wal",)]
    db = sqlite3.connect(hive_path)
    try:
        assert set(HIVE_TABLES) <= existing_tables(db)
        assert "memory_entries" not in existing_tables(db)
    finally:
        db.close()
    db = sqlite3.connect(memory_path)
    try:
        assert existing_tables(db) >= {"memory_entries"}
        assert "swarms" not in existing_tables(db)
    finally:
        db.close()


def test_other_aliases_are_not_touched(tmp_path, django_db_blocker):
    path = tmp_path / "other.db"
    wrapper = sqlite_file_wrapper("hive", path)
    wrapper.alias = "not_hive"
    with django_db_blocker.unblock():
        try:
            wrapper.ensure_connection()
        finally:
            wrapper.close()
    assert raw_rows(path, "SELECT name FROM sqlite_master") == []
    assert raw_rows(path, "PRAGMA journal_mode") == [("delete",)]


@pytest.mark.django_db(databases=HIVE_DATABASES)
def test_test_databases_hold_the_schema_and_nothing_of_djangos():
    hive_tables = existing_tables(connections["hive"].connection)
    memory_tables = existing_tables(connections["hive_memory"].connection)
    assert set(HIVE_TABLES) <= hive_tables
    assert set(MEMORY_TABLES) <= memory_tables
    # The router keeps Django's own tables (and the other table set) off the hive files. The test
    # runner's migrate still records migrations there (Django's recorder ignores routers); an empty
    # django_migrations is all it leaves (TEST MIGRATE False on the aliases would avoid even that).
    djangos = {name for name in hive_tables | memory_tables if name.startswith(("django_", "auth_"))}
    assert djangos <= {"django_migrations"}
    assert "memory_entries" not in hive_tables
    assert "swarms" not in memory_tables


def test_parent_directories_are_created_for_files_only(tmp_path):
    hive_path = tmp_path / "project" / ".hive-mind" / "hive.db"
    databases = {
        "hive": {"NAME": hive_path},
        "hive_memory": {"NAME": "file:memorydb_hive_memory?mode=memory&cache=shared"},
        "default": {"NAME": tmp_path / "elsewhere" / "db"},
    }
    assert ensure_database_dirs(databases) == [hive_path.parent]
    assert hive_path.parent.is_dir()
    assert not (tmp_path / "elsewhere").exists()
    assert ensure_database_dirs(databases) == []
