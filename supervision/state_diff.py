"""What changed in the supervision tree between two states of it: the one diff of nodes.

Two features compare trees: the tree at two past moments (the status history the console
records) and a snapshot with another snapshot or with now. Both reduce a tree to a mapping of
node UUID -> ``NodeState`` and ask this module what differs, so "changed" means the same thing on
every page: a node added or removed, its status changed, its parent changed, or a field of its
supervision policy changed (a policy added or removed counts as a policy change).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The policy's fields that decide what the supervisor does, in the order a page lists them.
POLICY_FIELDS = (
    "supervision_strategy",
    "max_restarts",
    "time_window_seconds",
    "backoff_strategy",
    "backoff_factor",
    "min_restart_delay_ms",
    "max_restart_delay_ms",
    "escalate_on_limit",
    "escalate_on_error_types",
    "escalation_timeout_seconds",
)


@dataclass(frozen=True)
class NodeState:
    """One node as it was: ``name`` is its ``node_id`` column; ``policy`` maps POLICY_FIELDS to
    values (None: the node had no policy)."""

    name: str
    node_type: str
    status: str
    parent: uuid.UUID | None = None
    policy: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class NodeChange:
    """A node present in both states whose status, parent or policy differs."""

    node: uuid.UUID
    before: NodeState
    after: NodeState
    status_changed: bool
    parent_changed: bool
    policy_changes: tuple[FieldChange, ...]


@dataclass
class TreeDiff:
    added: list[tuple[uuid.UUID, NodeState]] = field(default_factory=list)
    removed: list[tuple[uuid.UUID, NodeState]] = field(default_factory=list)
    changed: list[NodeChange] = field(default_factory=list)

    @property
    def status_changes(self) -> list[NodeChange]:
        return [change for change in self.changed if change.status_changed]

    @property
    def policy_changes(self) -> list[NodeChange]:
        return [change for change in self.changed if change.policy_changes]

    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_json(self) -> dict[str, Any]:
        return {
            "added": [_state_json(node, state) for node, state in self.added],
            "removed": [_state_json(node, state) for node, state in self.removed],
            "changed": [_change_json(change) for change in self.changed],
        }


def diff_trees(before: Mapping[uuid.UUID, NodeState], after: Mapping[uuid.UUID, NodeState]) -> TreeDiff:
    """The nodes added, removed and changed from ``before`` to ``after``, each list by node name."""
    diff = TreeDiff()
    for node, state in after.items():
        old = before.get(node)
        if old is None:
            diff.added.append((node, state))
            continue
        policy_changes = policy_field_changes(old.policy, state.policy)
        status_changed = old.status != state.status
        parent_changed = old.parent != state.parent
        if status_changed or parent_changed or policy_changes:
            diff.changed.append(NodeChange(node, old, state, status_changed, parent_changed, policy_changes))
    diff.removed = [(node, state) for node, state in before.items() if node not in after]
    diff.added.sort(key=lambda item: item[1].name)
    diff.removed.sort(key=lambda item: item[1].name)
    diff.changed.sort(key=lambda change: change.after.name)
    return diff


def policy_field_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[FieldChange, ...]:
    """The policy fields whose values differ; a missing policy reads as every field None."""
    if before == after:
        return ()
    old, new = before or {}, after or {}
    return tuple(
        FieldChange(name, old.get(name), new.get(name))
        for name in POLICY_FIELDS
        if _comparable(old.get(name)) != _comparable(new.get(name))
    )


def _comparable(value: Any) -> Any:
    """Values as both sources hold them: a Decimal 2.00 and a JSON "2.00" or 2.0 are one factor;
    error type lists compare as sets."""
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value)
    if isinstance(value, bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _state_json(node: uuid.UUID, state: NodeState) -> dict[str, Any]:
    return {
        "id": str(node),
        "name": state.name,
        "node_type": state.node_type,
        "status": state.status,
        "parent": str(state.parent) if state.parent else None,
    }


def _change_json(change: NodeChange) -> dict[str, Any]:
    return {
        "id": str(change.node),
        "name": change.after.name,
        "status": [change.before.status, change.after.status] if change.status_changed else None,
        "parent": [_str(change.before.parent), _str(change.after.parent)] if change.parent_changed else None,
        "policy": [
            {"field": item.field, "before": _json_value(item.before), "after": _json_value(item.after)}
            for item in change.policy_changes
        ],
    }


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return str(value)
