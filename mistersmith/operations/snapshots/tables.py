"""The PostgreSQL side of a snapshot: which tables, their columns, and COPY in and out.

The tables are every concrete model table of the apps that hold state (supervision, agents,
mistersmith), found from the app registry so that a table added later is included without
anyone remembering to list it. Users, groups, sessions and the admin log are not state of the
runtime and are not exported: a restore keeps the target's own accounts.

A restore loads the way pg_restore does: foreign keys and secondary indexes are dropped, the
rows copied in, then indexes built and foreign keys added back (which checks every row in one
pass). That is faster than checking row by row, and it is the only order that works for the
runtime's two tables that reference each other without deferrable constraints (agents and
supervision_nodes). All of it runs in the caller's transaction: any error puts everything back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from django.apps import apps
from django.core.management.color import no_style
from django.db import connection
from django.db.models import Model
from psycopg import sql

from mistersmith.operations.snapshots.format import CHUNK, chunks

STATE_APPS = ["supervision", "agents", "mistersmith"]
COMPONENT_ORDER = ["supervision", "agents", "discoveries", "bridge", "console"]
LOCK_TIMEOUT = "30s"


@dataclass(frozen=True)
class TableSpec:
    table: str
    component: str
    model: type[Model]


def component_of(model: type[Model]) -> str:
    """The part of the state a table belongs to, as the manifest and the issue name them."""
    from agents.models import Discovery
    from mistersmith.live.models import BridgePosition, CatchUp, DeadLetter

    if model is Discovery:
        return "discoveries"
    if model in (BridgePosition, CatchUp, DeadLetter):
        return "bridge"
    label = model._meta.app_label
    return {"supervision": "supervision", "agents": "agents"}.get(label, "console")


def state_tables() -> list[TableSpec]:
    """Every table of the state apps, in component order then by name."""
    found: dict[str, TableSpec] = {}
    for label in STATE_APPS:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            if model._meta.proxy or not model._meta.managed:
                continue
            if not getattr(model, "in_snapshots", True):  # a person's settings (SavedView), not state
                continue
            found[model._meta.db_table] = TableSpec(model._meta.db_table, component_of(model), model)
    return sorted(found.values(), key=lambda spec: (COMPONENT_ORDER.index(spec.component), spec.table))


def existing_tables(names: Iterable[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
            [list(names)],
        )
        return {row[0] for row in cursor.fetchall()}


def table_columns(table: str) -> list[str]:
    """The table's stored columns in their order (generated columns cannot be copied in)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            [quoted(table)],
        )
        return [row[0] for row in cursor.fetchall()]


def estimated_rows(table: str) -> int:
    """The planner's row estimate (free), for a progress bar's total."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [quoted(table)])
        return max(int(cursor.fetchone()[0]), 0)


def applied_migrations() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
        found: dict[str, list[str]] = {}
        for app, name in cursor.fetchall():
            found.setdefault(app, []).append(name)
        return found


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


def _copy_statement(table: str, columns: list[str], direction: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(direction)
    )


def copy_out(table: str, columns: list[str], target: IO[bytes], on_rows: Callable[[int], object]) -> int:
    """COPY the table to ``target`` in PostgreSQL's text format, chunk by chunk; returns its rows.

    A row is one line (newlines inside values are escaped), so counting lines counts rows.
    """
    rows = 0
    with connection.cursor() as cursor, cursor.cursor.copy(_copy_statement(table, columns, "TO STDOUT")) as copy:
        for data in copy:
            block = bytes(data)
            target.write(block)
            lines = block.count(b"\n")
            rows += lines
            on_rows(lines)
    return rows


def copy_in(table: str, columns: list[str], source: IO[bytes]) -> None:
    with connection.cursor() as cursor, cursor.cursor.copy(_copy_statement(table, columns, "FROM STDIN")) as copy:
        for data in chunks(source, CHUNK):
            copy.write(data)


def tables_with_rows(tables: Iterable[str]) -> list[str]:
    """The tables that hold at least one row (one cheap probe each)."""
    found = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted(table)})")
            if cursor.fetchone()[0]:
                found.append(table)
    return found


def exact_counts(tables: Iterable[str]) -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {quoted(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    definition: str
    referenced: str
    columns: list[str]
    nullable: bool


@dataclass(frozen=True)
class Index:
    table: str
    name: str
    definition: str


def foreign_keys(tables: list[str]) -> list[ForeignKey]:
    """The foreign keys declared on ``tables`` (to any table)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.confrelid::regclass::text,
                   array_agg(a.attname ORDER BY k.n), bool_and(NOT a.attnotnull)
              FROM pg_constraint c
              CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             WHERE c.contype = 'f' AND c.conrelid = ANY(%s::regclass[])
             GROUP BY c.oid, c.conrelid, c.conname, c.confrelid
             ORDER BY 1, 2
            """,
            [[quoted(table) for table in tables]],
        )
        return [
            ForeignKey(table.strip('"'), name, definition, referenced.strip('"'), list(columns), nullable)
            for table, name, definition, referenced, columns, nullable in cursor.fetchall()
        ]


def secondary_indexes(tables: list[str]) -> list[Index]:
    """Indexes that back no constraint (primary keys and unique constraints stay during a load)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, i.relname, pg_get_indexdef(i.oid)
              FROM pg_index x
              JOIN pg_class i ON i.oid = x.indexrelid
              JOIN pg_class t ON t.oid = x.indrelid
             WHERE x.indrelid = ANY(%s::regclass[])
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
             ORDER BY 1, 2
            """,
            [[quoted(table) for table in tables]],
        )
        return [Index(*row) for row in cursor.fetchall()]


def lock_and_empty(tables: list[str], *, replace: bool) -> list[str]:
    """Take the tables for the restore (ACCESS EXCLUSIVE: readers and writers wait for the commit).

    With ``replace`` they are emptied; without, they must already be empty: returns those that
    are not (checked under the lock, so nothing can slip in between the check and the load).
    """
    names = sql.SQL(", ").join(map(sql.Identifier, tables))
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        if replace:
            cursor.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))
            return []
        cursor.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
    return tables_with_rows(tables)


def drop_constraints(keys: list[ForeignKey], indexes: list[Index]) -> None:
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(key.table), sql.Identifier(key.name))
            )
        for index in indexes:
            cursor.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index.name)))


def restore_constraints(keys: list[ForeignKey], indexes: list[Index]) -> None:
    with connection.cursor() as cursor:
        for index in indexes:
            cursor.execute(index.definition)
        for key in keys:
            cursor.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(key.table), sql.Identifier(key.name))
                + sql.SQL(key.definition)
            )


def clear_dangling(keys: list[ForeignKey], restored: set[str]) -> dict[str, int]:
    """References to tables the snapshot does not carry (users: ``requested_by``) whose row does
    not exist here are set to NULL, so a snapshot restores into an installation with other
    accounts. Returns the count per ``table.column``. A NOT NULL one is left for the constraint
    to refuse, with PostgreSQL's own message."""
    cleared = {}
    with connection.cursor() as cursor:
        for key in keys:
            if key.referenced in restored or len(key.columns) != 1 or not key.nullable:
                continue
            column = key.columns[0]
            target_column = _referenced_column(key)
            cursor.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = NULL WHERE {c} IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.{rc} = {t}.{c})"
                ).format(
                    t=sql.Identifier(key.table),
                    c=sql.Identifier(column),
                    r=sql.Identifier(key.referenced),
                    rc=sql.Identifier(target_column),
                )
            )
            if cursor.rowcount:
                cleared[f"{key.table}.{column}"] = cursor.rowcount
    return cleared


def _referenced_column(key: ForeignKey) -> str:
    # "FOREIGN KEY (x) REFERENCES t(id) ..." -> "id"
    inside = key.definition.split("REFERENCES", 1)[1]
    return inside[inside.index("(") + 1 : inside.index(")")].strip().strip('"')


def reset_sequences(models: list[type[Model]]) -> None:
    """Identity and serial columns continue after the restored rows."""
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def analyze(tables: list[str]) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
