"""Fixtures for the hive tests: real SQLite files in tmp_path, swapped in for the hive aliases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hive.sqlite_files import OLD_HIVE_SQL, OLD_MEMORY_SQL, alias_on_file, write_sqlite


@pytest.fixture
def old_hive_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The hive aliases on files written by an older claude-flow, for the duration of the test."""
    hive_path = write_sqlite(tmp_path / "hive.db", OLD_HIVE_SQL)
    memory_path = write_sqlite(tmp_path / "memory.db", OLD_MEMORY_SQL)
    with alias_on_file("hive", hive_path), alias_on_file("hive_memory", memory_path):
        yield hive_path, memory_path


@pytest.fixture
def admin_user(django_user_model):
    """The suite's superuser, without a password to hash: ``admin_client`` logs in with force_login."""
    return django_user_model.objects.create_superuser("admin", "admin@example.com", None)
