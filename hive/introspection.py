"""What the hive files actually contain, read from the files themselves.

claude-flow adds columns from one version to the next (``collective_memory`` gained
``accessed_at``, ``access_count``, ``compressed`` and ``size``; ``sessions`` gained the pid
columns), and the console must read whichever version wrote the file. So the models ask the
file: ``PRAGMA table_info`` once per table and per open connection (a new connection may be a
different file, or one a newer tool has altered), cached on the connection wrapper.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models import Field, Model

_CACHE_ATTR = "_hive_table_columns"


def table_columns(using: str, table: str) -> frozenset[str] | None:
    """The column names of ``table`` in database ``using``; None if unknown (no such table, not SQLite)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return None
    connection.ensure_connection()
    raw = connection.connection
    cached = getattr(connection, _CACHE_ATTR, None)
    if cached is None or cached[0] is not raw:
        # Keyed on the DB-API connection itself: a reconnect starts a fresh cache.
        cached = (raw, {})
        setattr(connection, _CACHE_ATTR, cached)
    columns = cached[1].get(table)
    if columns is None:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA table_info({connection.ops.quote_name(table)})")
            columns = frozenset(row[1] for row in cursor.fetchall())
        cached[1][table] = columns
    return columns or None


def absent_fields(model: type[Model], using: str | None = None) -> list[Field]:
    """The concrete fields of ``model`` whose column the file lacks (never the primary key)."""
    using = using or router.db_for_read(model)
    columns = table_columns(using, model._meta.db_table)
    if columns is None:
        return []
    return [field for field in model._meta.concrete_fields if not field.primary_key and field.column not in columns]


def absent_attnames(model: type[Model], using: str | None = None) -> frozenset[str]:
    """Attribute names (``swarm_id``, not ``swarm``) of :func:`absent_fields`."""
    return frozenset(field.attname for field in absent_fields(model, using))


def absent_names(model: type[Model], using: str | None = None) -> frozenset[str]:
    """Field names (``swarm``, not ``swarm_id``) of :func:`absent_fields`, for admin options."""
    return frozenset(field.name for field in absent_fields(model, using))


def defer_foreign_keys(using: str) -> None:
    """Check foreign keys at commit rather than per statement, until the transaction ends.

    claude-flow declares its foreign keys without ``DEFERRABLE``, and Django (which turns
    SQLite's foreign keys on) orders cascading deletes only for non-null relations. Deferring
    the checks lets a cascade delete children and parent in any order, and still refuses to
    commit a dangling reference. Must run inside a transaction.
    """
    connection: Any = connections[using]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA defer_foreign_keys = ON")
