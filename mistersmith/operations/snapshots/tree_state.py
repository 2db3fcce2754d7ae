"""The supervision tree as a mapping node UUID -> ``NodeState`` (supervision/state_diff.py), read
from a snapshot or from the database now: the two sources the snapshot diff compares.

A snapshot's tree is read from two members only, ``supervision_nodes`` and
``supervision_policies``, line by line through the bounded member reader (COPY text, see
copytext.py); only the columns a NodeState holds are unescaped, and each member's sha256 is
checked against the manifest on the way, without a second pass. The failures, by far the largest
member, are never read. The tree now is one statement, the nodes joined to their policies, read in
batches through a server-side cursor.

Memory: at 100,000 nodes a tree is some tens of megabytes. Most nodes share a handful of policies
(the runtime's default above all), so each distinct policy is one dict (``SharedPolicies``), and
in a snapshot a policy row seen before is not even converted again.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, TypeVar

from django.db import connection

from mistersmith.operations.snapshots import copytext
from mistersmith.operations.snapshots.format import (
    CHUNK,
    ChecksumMismatch,
    SnapshotError,
    UnsupportedSnapshot,
    member_reader,
    open_archive,
    read_manifest,
)
from supervision.state_diff import POLICY_FIELDS, NodeState

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
ERROR_TYPES = POLICY_FIELDS.index("escalate_on_error_types")
Tree = dict[uuid.UUID, NodeState]
Row = TypeVar("Row")


class SharedPolicies:
    """One dict per distinct policy, found by a hashable key of its values (built once per key)."""

    def __init__(self) -> None:
        self.seen: dict[Hashable, dict[str, Any]] = {}

    def get(self, key: Hashable, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        policy = self.seen.get(key)
        if policy is None:
            policy = self.seen[key] = build()
        return policy


# --- A snapshot's tree ----------------------------------------------------------------------------


class HashingReader(io.RawIOBase):
    """The stored bytes of a member as the decompressor reads them, hashed on the way, so the
    members read are checked against the manifest without a second pass."""

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


def table_member(manifest: Mapping[str, Any], table: str, label: str) -> dict[str, Any]:
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


def member_rows(
    tar: tarfile.TarFile,
    member: dict[str, Any],
    codec: str,
    wanted: tuple[str, ...],
    convert: Callable[[list[bytes]], Row],
    label: str,
) -> Iterator[Row]:
    """``convert`` of the ``wanted`` columns (raw COPY bytes) of every row of a table member,
    checked against the member's checksum and row count. Anything wrong (a value ``convert``
    refuses included) is a SnapshotError, and a ChecksumMismatch when the member's bytes are not
    what the manifest says: "edited" tells the operator more than the first odd value does."""
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


class _Values:
    """COPY values of one snapshot as Python values, UUIDs built once per distinct text."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.uuids: dict[bytes, uuid.UUID] = {}

    def text(self, raw: bytes) -> str:
        value = copytext.field_value(raw)
        if value is None:
            raise UnsupportedSnapshot(f"{self.label}: a node has no id, name, type or status.")
        return value

    def uuid(self, raw: bytes) -> uuid.UUID | None:
        if raw == copytext.NULL:
            return None
        found = self.uuids.get(raw)
        if found is None:
            try:
                found = self.uuids[raw] = uuid.UUID(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise UnsupportedSnapshot(f"{self.label}: {raw[:60]!r} is not a UUID.") from None
        return found

    def required_uuid(self, raw: bytes) -> uuid.UUID:
        value = self.uuid(raw)
        if value is None:
            raise UnsupportedSnapshot(f"{self.label}: a row has no id.")
        return value

    def policy(self, raw: list[bytes]) -> dict[str, Any]:
        return {name: self.policy_value(name, value) for name, value in zip(POLICY_FIELDS, raw, strict=True)}

    def policy_value(self, name: str, raw: bytes) -> Any:
        """A policy column as the database gives it (int, Decimal, bool, list of text)."""
        text = copytext.field_value(raw)
        if text is None:
            return None
        try:
            if name in INTEGER_FIELDS:
                return int(text)
            if name == "backoff_factor":
                return Decimal(text)
        except (ValueError, InvalidOperation):
            raise UnsupportedSnapshot(f"{self.label}: {name} {text[:40]!r} is not a number.") from None
        if name == "escalate_on_limit":
            if text not in ("t", "f"):
                raise UnsupportedSnapshot(f"{self.label}: escalate_on_limit {text[:40]!r} is not a boolean.")
            return text == "t"
        if name == "escalate_on_error_types":
            return copytext.array_value(text)
        return text


def snapshot_tree(path: Path) -> tuple[Tree, dict[str, Any]]:
    """The tree a snapshot holds, and its manifest. SnapshotError for anything amiss."""
    label = path.name
    values = _Values(label)
    shared = SharedPolicies()

    def policy_row(raw: list[bytes]) -> tuple[uuid.UUID, dict[str, Any]]:
        fields = raw[1:]
        return values.required_uuid(raw[0]), shared.get(tuple(fields), lambda: values.policy(fields))

    def node_row(raw: list[bytes]) -> tuple[uuid.UUID, str, str, str, uuid.UUID | None]:
        node, name, node_type, status, parent = raw
        return (
            values.required_uuid(node),
            values.text(name),
            values.text(node_type),
            values.text(status),
            values.uuid(parent),
        )

    with open_archive(path) as tar:
        manifest = read_manifest(tar, label)
        codec = manifest["compression"]
        member = table_member(manifest, POLICIES_TABLE, label)
        policies = dict(member_rows(tar, member, codec, ("node_id", *POLICY_FIELDS), policy_row, label))
        member = table_member(manifest, NODES_TABLE, label)
        tree: Tree = {
            node: NodeState(name, node_type, status, parent, policies.get(node))
            for node, name, node_type, status, parent in member_rows(tar, member, codec, NODE_COLUMNS, node_row, label)
        }
    return tree, manifest


def snapshot_counts(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Rows per table, as the manifest records them (counted when each member was written)."""
    return {member["table"]: member["rows"] for member in manifest["members"] if member["kind"] == "table"}


# --- The tree now ---------------------------------------------------------------------------------

LIVE_TREE_SQL = (
    "SELECT n.id, n.node_id, n.node_type::text, n.status::text, n.parent_node_id, p.id IS NOT NULL, "
    + ", ".join(f"p.{name}" + ("::text" if name.endswith("_strategy") else "") for name in POLICY_FIELDS)
    + " FROM supervision_nodes n LEFT JOIN supervision_policies p ON p.node_id = n.id"
)


def live_tree() -> Tree:
    """The tree in the database now: one statement, read in batches through a server-side cursor
    (in the caller's transaction, so that it agrees with whatever else the caller reads)."""
    tree: Tree = {}
    shared = SharedPolicies()
    with connection.chunked_cursor() as cursor:
        cursor.execute(LIVE_TREE_SQL)
        while batch := cursor.fetchmany(5000):
            for node, name, node_type, status, parent, has_policy, *fields in batch:
                policy = None
                if has_policy:
                    key = (*fields[:ERROR_TYPES], tuple(fields[ERROR_TYPES]), *fields[ERROR_TYPES + 1 :])
                    policy = shared.get(key, lambda fields=fields: dict(zip(POLICY_FIELDS, fields, strict=True)))
                tree[node] = NodeState(name, node_type, status, parent, policy)
    return tree
