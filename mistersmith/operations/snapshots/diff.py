"""What changed between two snapshots, or between a snapshot and now: the supervision tree's
nodes added, removed and changed (status, parent, policy fields), and the rows per table.

Each side is reduced to a mapping node UUID -> ``NodeState`` (tree_state.py: from a snapshot's
two supervision members, or from the database in one statement) and handed to
``supervision.state_diff.diff_trees``, the one diff of tree states, so "changed" means here what
it means on every other page.

Rows per table come from the manifest for a snapshot (each table member records its rows, counted
when it was written) and from exact ``count(*)``s for now, read in the same REPEATABLE READ
transaction as the tree so that both describe one moment (a count of 1,000,000 failures is a few
hundred milliseconds: exact is affordable, and an estimate would make "difference" lie).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from mistersmith.operations.snapshots import tables as snapshot_tables
from mistersmith.operations.snapshots.tree_state import Tree, live_tree, snapshot_counts, snapshot_tree
from supervision.state_diff import NodeState, TreeDiff, diff_trees


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
