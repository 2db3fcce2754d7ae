"""What changed between two snapshots, or between a snapshot and now: the supervision tree's
nodes added, removed and changed (status, parent, policy fields), and the rows per table.

Each side is reduced to a mapping node UUID -> ``NodeState`` and handed to
``supervision.state_diff.diff_trees``, the one diff of tree states, so "changed" means here what
it means on every other page. A snapshot side reads two members only, ``supervision_nodes`` and
``supervision_policies``, streamed line by line through the bounded member reader, and checks
their sha256 against the manifest on the way (the failures, by far the largest member, are never
read). The "now" side is one statement over the nodes joined to their policies. At 100,000 nodes
each mapping is some tens of megabytes: fine for a page a superuser opens now and then.

Rows per table come from the manifest for a snapshot (each table member records its rows, counted
when it was written) and from exact ``count(*)``s for now, read in the same REPEATABLE READ
transaction as the tree so that both describe one moment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, TypeVar

from django.db import connection, transaction

from mistersmith.operations.snapshots import copytext
from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.format import (
    CHUNK,
    ChecksumMismatch,
    SnapshotError,
    UnsupportedSnapshot,
    member_reader,
    open_archive,
    read_manifest,
)
from supervision.state_diff import POLICY_FIELDS, NodeState, TreeDiff, diff_trees

NODES_TABLE = "supervision_nodes"
POLICIES_TABLE = "supervision_policies"
NODE_COLUMNS = ("id", "node_id", "node_type", "status", "parent_node_id")
INTEGER_FIELDS = {
    "max_restarts",
    "time_window_seconds",
    "min_restart_delay_ms",
    "max_restart_delay_ms",
    "escalation_timeout_seconds",
}
Tree = dict[uuid.UUID, NodeState]
Row = TypeVar("Row")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a snapshot (its name and manifest) or the database now."""

    label: str
    taken_at: str
    snapshot: str | None = None

    @property
    def is_now(self) -> bool:
        return self.snapshot is None


@dataclass(frozen=True)
class TableCount:
    """A table's rows on each side (None: the table is not on that side)."""

    table: str
    before: int | None
    after: int | None

    @property
    def difference(self) -> int | None:
        return None if self.before is None or self.after is None else self.after - self.before


@dataclass(frozen=True)
class ChangeRow:
    """A changed node as a page lists it: each change as (before, after) texts, None if unchanged."""

    node: uuid.UUID
    name: str
    status: tuple[str, str] | None
    parent: tuple[str, str] | None
    policy: list[tuple[str, str, str]]


@dataclass(frozen=True)
class NodeRow:
    """An added or removed node as a page lists it, with its parent's name."""

    node: uuid.UUID
    name: str
    node_type: str
    status: str
    parent: str


@dataclass
class SnapshotDiff:
    before: Side
    after: Side
    tree: TreeDiff
    counts: list[TableCount]
    before_tree: Tree = field(repr=False)
    after_tree: Tree = field(repr=False)

    def parent_name(self, node: uuid.UUID | None, side: str) -> str | None:
        """The name of ``node`` on one side ("before" or "after"), for a parent moved."""
        if node is None:
            return None
        state = (self.before_tree if side == "before" else self.after_tree).get(node)
        return state.name if state else str(node)

    def added_rows(self, limit: int) -> list[NodeRow]:
        return [self._node_row(node, state, "after") for node, state in self.tree.added[:limit]]

    def removed_rows(self, limit: int) -> list[NodeRow]:
        return [self._node_row(node, state, "before") for node, state in self.tree.removed[:limit]]

    def changed_rows(self, limit: int) -> list[ChangeRow]:
        return [
            ChangeRow(
                change.node,
                change.after.name,
                (change.before.status, change.after.status) if change.status_changed else None,
                (
                    self.parent_name(change.before.parent, "before") or "(none)",
                    self.parent_name(change.after.parent, "after") or "(none)",
                )
                if change.parent_changed
                else None,
                [(item.field, _value_text(item.before), _value_text(item.after)) for item in change.policy_changes],
            )
            for change in self.tree.changed[:limit]
        ]

    def _node_row(self, node: uuid.UUID, state: NodeState, side: str) -> NodeRow:
        parent = self.parent_name(state.parent, side) or "(none)"
        return NodeRow(node, state.name, state.node_type, state.status, parent)

    def summary(self) -> dict[str, int]:
        tree = self.tree
        return {
            "added": len(tree.added),
            "removed": len(tree.removed),
            "changed": len(tree.changed),
            "status": len(tree.status_changes),
            "parent": sum(1 for change in tree.changed if change.parent_changed),
            "policy": len(tree.policy_changes),
        }

    def lines(self) -> list[str]:
        """The summary as text (the command's output)."""
        figures = self.summary()
        lines = [
            f"From {self.before.label} to {self.after.label}:",
            f"  nodes: {figures['added']:,} added, {figures['removed']:,} removed, {figures['changed']:,} changed "
            f"({figures['status']:,} status, {figures['parent']:,} parent, {figures['policy']:,} policy)",
        ]
        lines += [f"  + {state.name} ({state.node_type}, {state.status})" for _, state in self.tree.added[:20]]
        lines += [f"  - {state.name} ({state.node_type}, {state.status})" for _, state in self.tree.removed[:20]]
        lines += [f"  ~ {row.name}: {'; '.join(change_texts(row))}" for row in self.changed_rows(20)]
        shown = max(len(self.tree.added), len(self.tree.removed), len(self.tree.changed))
        if shown > 20:
            lines.append("  (the first 20 of each; --json prints the whole diff)")
        lines.append("  rows per table (before -> after):")
        for count in self.counts:
            difference = count.difference
            moved = f" ({difference:+,})" if difference else ""
            lines.append(f"    {count.table}: {_count_text(count.before)} -> {_count_text(count.after)}{moved}")
        return lines

    def as_json(self) -> dict[str, Any]:
        """The whole diff (every node, not a capped list), for the download and ``--json``."""
        return {
            "before": _side_json(self.before),
            "after": _side_json(self.after),
            "summary": self.summary(),
            **self.tree.as_json(),
            "counts": [
                {"table": c.table, "before": c.before, "after": c.after, "difference": c.difference}
                for c in self.counts
            ],
        }


def change_texts(row: ChangeRow) -> list[str]:
    """A changed node's changes, one text each ("status active -> failed")."""
    texts = [f"status {row.status[0]} -> {row.status[1]}"] if row.status else []
    texts += [f"parent {row.parent[0]} -> {row.parent[1]}"] if row.parent else []
    return texts + [f"{name} {before} -> {after}" for name, before, after in row.policy]


def _count_text(value: int | None) -> str:
    return "absent" if value is None else f"{value:,}"


def _value_text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return "{" + ",".join(str(item) for item in value) + "}"
    return str(value)


def _side_json(side: Side) -> dict[str, Any]:
    return {"label": side.label, "snapshot": side.snapshot, "taken_at": side.taken_at}


# --- A snapshot's side ------------------------------------------------------------------------


class HashingReader(io.RawIOBase):
    """The stored bytes of a member as the decompressor reads them, hashed on the way, so the
    members the diff reads are checked against the manifest without a second pass."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self.source.read(-1 if size is None else size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def matches(self, member: Mapping[str, Any]) -> bool:
        """Whether the whole member (what the decompressor left unread included) is what the
        manifest says."""
        while self.read(CHUNK):
            pass
        return self.size == member.get("size") and self.sha256.hexdigest() == member.get("sha256")


class SharedPolicies:
    """One dict per distinct policy: most nodes share a few policies (the runtime's default above
    all), so at 100,000 nodes this keeps a tree's memory to its nodes rather than 100,000 copies."""

    def __init__(self) -> None:
        self.seen: dict[tuple[Any, ...], dict[str, Any]] = {}

    def __call__(self, policy: dict[str, Any]) -> dict[str, Any]:
        key = tuple(tuple(value) if isinstance(value, list) else value for value in policy.values())
        return self.seen.setdefault(key, policy)


def _table_member(manifest: Mapping[str, Any], table: str, label: str) -> dict[str, Any]:
    for member in manifest["members"]:
        if member["kind"] == "table" and member["table"] == table:
            return member
    raise UnsupportedSnapshot(f"{label} holds no {table} table; it cannot be compared.")


def _column_positions(member: Mapping[str, Any], wanted: tuple[str, ...], label: str) -> list[int]:
    columns = member["columns"]
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise UnsupportedSnapshot(f"{label}: {member['table']} has no column {', '.join(missing)}.")
    return [columns.index(name) for name in wanted]


def _member_rows(
    tar: tarfile.TarFile,
    member: dict[str, Any],
    codec: str,
    wanted: tuple[str, ...],
    convert: Callable[[list[str | None]], Row],
    label: str,
) -> Iterator[Row]:
    """``convert`` of the ``wanted`` columns of every row of a table member, checked against the
    member's checksum and row count. Anything wrong (a value ``convert`` refuses included) is a
    SnapshotError, and a ChecksumMismatch when the member's bytes are not what the manifest says:
    "edited" tells the operator more than the first odd value does."""
    positions = _column_positions(member, wanted, label)
    hashing: list[HashingReader] = []

    def wrap(raw: IO[bytes]) -> HashingReader:
        hashing.append(HashingReader(raw))
        return hashing[0]

    name = f"{label}: {member['name']}"
    mismatch = f"{name} fails its checksum: the snapshot is damaged or was edited."
    count = 0
    with member_reader(tar, member, codec, wrap=wrap) as reader:
        try:
            lines = io.BufferedReader(reader, CHUNK)  # type: ignore[arg-type]
            for values in copytext.rows(lines, len(member["columns"]), name):
                count += 1
                yield convert([values[position] for position in positions])
        except SnapshotError as error:
            if hashing and not hashing[0].matches(member):
                raise ChecksumMismatch(mismatch) from error
            raise
        if not hashing[0].matches(member):
            raise ChecksumMismatch(mismatch)
    if count != member["rows"]:
        raise UnsupportedSnapshot(f"{name} holds {count:,} rows, not the {member['rows']:,} its manifest says.")


def _uuid(text: str | None, label: str) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UnsupportedSnapshot(f"{label}: {text[:60]!r} is not a UUID.") from None


def _required_uuid(text: str | None, label: str) -> uuid.UUID:
    value = _uuid(text, label)
    if value is None:
        raise UnsupportedSnapshot(f"{label}: a row has no id.")
    return value


def _policy_value(name: str, text: str | None, label: str) -> Any:
    """A policy column's COPY text as the value the database would give (int, Decimal, bool, list)."""
    if text is None:
        return None
    try:
        if name in INTEGER_FIELDS:
            return int(text)
        if name == "backoff_factor":
            return Decimal(text)
    except (ValueError, InvalidOperation):
        raise UnsupportedSnapshot(f"{label}: {name} {text[:40]!r} is not a number.") from None
    if name == "escalate_on_limit":
        if text not in ("t", "f"):
            raise UnsupportedSnapshot(f"{label}: escalate_on_limit {text[:40]!r} is not a boolean.")
        return text == "t"
    if name == "escalate_on_error_types":
        return copytext.array_value(text)
    return text


def snapshot_tree(path: Path) -> tuple[Tree, dict[str, Any]]:
    """The tree a snapshot holds, and its manifest."""
    label = path.name
    shared = SharedPolicies()

    def policy_row(values: list[str | None]) -> tuple[uuid.UUID, dict[str, Any]]:
        node, *fields = values
        policy = {name: _policy_value(name, value, label) for name, value in zip(POLICY_FIELDS, fields, strict=True)}
        return _required_uuid(node, label), shared(policy)

    def node_row(values: list[str | None]) -> tuple[uuid.UUID, str, str, str, uuid.UUID | None]:
        node, name, node_type, status, parent = values
        if name is None or node_type is None or status is None:
            raise UnsupportedSnapshot(f"{label}: a node has no name, type or status.")
        return _required_uuid(node, label), name, node_type, status, _uuid(parent, label)

    with open_archive(path) as tar:
        manifest = read_manifest(tar, label)
        codec = manifest["compression"]
        member = _table_member(manifest, POLICIES_TABLE, label)
        policies = dict(_member_rows(tar, member, codec, ("node_id", *POLICY_FIELDS), policy_row, label))
        member = _table_member(manifest, NODES_TABLE, label)
        tree: Tree = {
            node: NodeState(name, node_type, status, parent, policies.get(node))
            for node, name, node_type, status, parent in _member_rows(tar, member, codec, NODE_COLUMNS, node_row, label)
        }
    return tree, manifest


def snapshot_counts(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Rows per table, as the manifest records them."""
    return {member["table"]: member["rows"] for member in manifest["members"] if member["kind"] == "table"}


# --- Now ------------------------------------------------------------------------------------------

LIVE_TREE_SQL = (
    "SELECT n.id, n.node_id, n.node_type::text, n.status::text, n.parent_node_id, p.id IS NOT NULL, "
    + ", ".join(f"p.{name}" + ("::text" if name.endswith("_strategy") else "") for name in POLICY_FIELDS)
    + " FROM supervision_nodes n LEFT JOIN supervision_policies p ON p.node_id = n.id"
)


def live_tree() -> Tree:
    """The tree in the database now: one statement, read in batches through a server-side cursor."""
    tree: Tree = {}
    shared = SharedPolicies()
    with connection.chunked_cursor() as cursor:
        cursor.execute(LIVE_TREE_SQL)
        while batch := cursor.fetchmany(5000):
            for node, name, node_type, status, parent, has_policy, *values in batch:
                policy = shared(dict(zip(POLICY_FIELDS, values, strict=True))) if has_policy else None
                tree[node] = NodeState(name, node_type, status, parent, policy)
    return tree


def live_counts() -> dict[str, int]:
    """Exact rows of every state table that exists here (one count(*) each)."""
    names = [spec.table for spec in snapshot_tables.state_tables()]
    present = snapshot_tables.existing_tables(names)
    return snapshot_tables.exact_counts([name for name in names if name in present])


def _now_side() -> tuple[Tree, dict[str, int], Side]:
    nested = connection.in_atomic_block  # inside a caller's transaction (a test's): its isolation stands
    with transaction.atomic():
        if not nested:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tree = live_tree()
        counts = live_counts()
    taken = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return tree, counts, Side(label=f"now ({taken})", taken_at=taken)


def _snapshot_side(path: Path) -> tuple[Tree, dict[str, int], Side]:
    tree, manifest = snapshot_tree(path)
    created = str(manifest.get("created_at", ""))
    return tree, snapshot_counts(manifest), Side(label=path.name, taken_at=created, snapshot=path.name)


def diff_snapshots(before: Path, after: Path | None = None) -> SnapshotDiff:
    """What changed from the snapshot ``before`` to the snapshot ``after`` (None: to now).

    Raises SnapshotError (UnsupportedSnapshot, ChecksumMismatch) for a file that is no snapshot,
    is damaged or was edited, or lacks the supervision tables.
    """
    before_tree, before_counts, before_side = _snapshot_side(before)
    after_tree, after_counts, after_side = _snapshot_side(after) if after is not None else _now_side()
    tables = list(before_counts) + [table for table in after_counts if table not in before_counts]
    counts = [TableCount(table, before_counts.get(table), after_counts.get(table)) for table in tables]
    return SnapshotDiff(before_side, after_side, diff_trees(before_tree, after_tree), counts, before_tree, after_tree)
