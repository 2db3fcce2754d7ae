"""Retention: state older than its retention deleted in small batches, so no lock is held long.

One setting per state type (``settings.RETENTION_DAYS``, from ``MISTERSMITH_RETENTION_<TYPE>_DAYS``;
0 keeps forever):

- ``restarts``: supervision_restarts by started_at (the runtime's table);
- ``failures``: supervision_failures by occurred_at, except a failure a kept restart refers to
  (restarts.failure_id cascades: deleting the failure would take the restart with it). Restarts
  are pruned first, so a failure goes once its restarts have gone. With them, the history of node
  states (supervision_node_history) by the end of each version: the tree at a past moment is
  known as long as its failures are; a version that still holds is never pruned;
- ``events``: the console's own records of what happened: agent commands (requested_at) and
  agent anomalies (recorded_at). The streams' own history is bounded by each stream's max_age;
- ``sessions``: closed interactive sessions (Error, Terminated) that ended before the cutoff,
  with their messages (deleted first, in the same transaction: the foreign key has no cascade
  in the database);
- ``dead_letters``: by received_at (the bridge also keeps at most the newest 1,000).

Each batch selects at most ``batch_size`` rows in time order after the previous batch's last
(time, id), deletes them and commits: a batch is one short transaction using the time index,
rows kept back (a referenced failure, an open session) are never read twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.models import AgentAnomaly, AgentCommandRecord, InteractiveSession, SessionMessage, SessionState
from mistersmith.live.models import DeadLetter
from supervision.models import SupervisionNodeHistory

logger = logging.getLogger(__name__)

KINDS = ("restarts", "failures", "events", "sessions", "dead_letters")  # also the order they are pruned in
DEFAULT_BATCH = 5000
CLOSED_SESSION_STATES = (SessionState.ERROR.value, SessionState.TERMINATED.value)


@dataclass(frozen=True)
class Target:
    """One table under one retention setting."""

    kind: str
    table: str
    time_column: str
    candidates: str = ""  # more conditions on the rows of ``t`` that age out
    children: tuple[str, str] | None = None  # (table, column) rows referring to ``t`` without a cascade


@dataclass
class PruneResult:
    kind: str
    table: str
    cutoff: datetime
    deleted: int = 0  # rows of the table (counted, not deleted, in a dry run)
    children: int = 0  # rows of the children table with them
    batches: int = 0
    largest_batch: int = 0
    kept_back: int = 0  # aged out but kept (a failure a kept restart refers to)
    notes: list[str] = field(default_factory=list)


def targets() -> list[Target]:
    return [
        Target("restarts", "supervision_restarts", "started_at"),
        # Before the failures: a caller keying results by kind keeps the failures' own.
        Target("failures", SupervisionNodeHistory._meta.db_table, "valid_to", candidates="t.valid_to IS NOT NULL"),
        Target("failures", "supervision_failures", "occurred_at"),
        Target("events", AgentCommandRecord._meta.db_table, "requested_at"),
        Target("events", AgentAnomaly._meta.db_table, "recorded_at"),
        Target(
            "sessions",
            InteractiveSession._meta.db_table,
            "started_at",
            candidates="t.state = ANY(%(closed)s) AND COALESCE(t.ended_at, t.started_at) < %(cutoff)s",
            children=(SessionMessage._meta.db_table, "session_id"),
        ),
        Target("dead_letters", DeadLetter._meta.db_table, "received_at"),
    ]


def retention_days() -> dict[str, int]:
    """The retention setting per kind, in days (0: kept forever)."""
    configured = getattr(settings, "RETENTION_DAYS", {})
    return {kind: int(configured.get(kind, 0)) for kind in KINDS}


def prune(
    *,
    only: Iterable[str] | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    now: datetime | None = None,
    progress: Callable[[PruneResult], None] | None = None,
) -> list[PruneResult]:
    """Delete (or with ``dry_run`` count) what is older than its retention; one result per table."""
    kinds = list(only) if only else list(KINDS)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"Unknown state type {sorted(unknown)[0]!r}; use {', '.join(KINDS)}.")
    if batch_size < 1:
        raise ValueError("The batch size must be 1 or more.")
    now = now or timezone.now()
    days = retention_days()
    cutoffs = {kind: now - timedelta(days=days[kind]) for kind in kinds if days[kind] > 0}
    results = []
    for target in targets():
        if target.kind not in kinds:
            continue
        if target.kind not in cutoffs:
            result = PruneResult(target.kind, target.table, now)
            result.notes.append("kept forever (retention 0)")
            results.append(result)
            continue
        params = {"cutoff": cutoffs[target.kind], "closed": list(CLOSED_SESSION_STATES)}
        keep = ""
        if target.table == "supervision_failures":
            keep, params["restart_cutoff"] = _kept_by_restart(cutoffs.get("restarts"))
        result = PruneResult(target.kind, target.table, cutoffs[target.kind])
        if dry_run:
            _count(target, keep, params, result)
        else:
            _delete(target, keep, params, batch_size, result, progress)
        logger.info(
            "prune %s %s older than %s: %s %s rows%s",
            target.kind,
            target.table,
            result.cutoff.isoformat(),
            "would delete" if dry_run else "deleted",
            result.deleted,
            f" (+{result.children} {target.children[0]})" if target.children else "",
        )
        results.append(result)
    return results


def _kept_by_restart(restart_cutoff: datetime | None) -> tuple[str, datetime | None]:
    """The condition that keeps a failure back: a restart refers to it and stays. When restarts
    are pruned in the same run only a restart inside its retention counts (an older one goes with
    the failure: the cascade)."""
    newer = " AND r.started_at >= %(restart_cutoff)s" if restart_cutoff is not None else ""
    return f"EXISTS (SELECT 1 FROM supervision_restarts r WHERE r.failure_id = t.id{newer})", restart_cutoff


def _aged(target: Target) -> str:
    conditions = [f"t.{target.time_column} < %(cutoff)s"]
    if target.candidates:
        conditions.append(target.candidates)
    return " AND ".join(conditions)


def _count(target: Target, keep: str, params: dict[str, Any], result: PruneResult) -> None:
    aged = _aged(target)
    with connection.cursor() as cursor:
        deletable = f" AND NOT {keep}" if keep else ""
        cursor.execute(f"SELECT count(*) FROM {target.table} t WHERE {aged}{deletable}", params)
        result.deleted = cursor.fetchone()[0]
        if keep:
            cursor.execute(f"SELECT count(*) FROM {target.table} t WHERE {aged} AND {keep}", params)
            result.kept_back = cursor.fetchone()[0]
        if target.children:
            child, column = target.children
            cursor.execute(
                f"SELECT count(*) FROM {child} c JOIN {target.table} t ON t.id = c.{column} WHERE {aged}", params
            )
            result.children = cursor.fetchone()[0]


def _delete(
    target: Target,
    keep: str,
    params: dict[str, Any],
    batch_size: int,
    result: PruneResult,
    progress: Callable[[PruneResult], None] | None,
) -> None:
    time_column = target.time_column
    after: tuple[Any, Any] | None = None
    while True:
        keyset = f" AND (t.{time_column}, t.id) > (%(after_time)s, %(after_id)s)" if after else ""
        select = (
            f"SELECT t.id, t.{time_column} FROM {target.table} t WHERE {_aged(target)}{keyset} "
            f"ORDER BY t.{time_column}, t.id LIMIT %(limit)s"
        )
        batch_params = {**params, "limit": batch_size}
        if after:
            batch_params.update(after_time=after[0], after_id=after[1])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(select, batch_params)
            rows = cursor.fetchall()
            if not rows:
                return
            ids = [row[0] for row in rows]
            if target.children:
                child, column = target.children
                cursor.execute(f"DELETE FROM {child} WHERE {column} = ANY(%(ids)s)", {"ids": ids})
                result.children += cursor.rowcount
            deletable = f" AND NOT {keep}" if keep else ""
            cursor.execute(f"DELETE FROM {target.table} t WHERE t.id = ANY(%(ids)s){deletable}", {**params, "ids": ids})
            deleted = cursor.rowcount
        after = (rows[-1][1], rows[-1][0])  # (time, id) of the last row
        result.batches += 1
        result.deleted += deleted
        result.kept_back += len(rows) - deleted
        result.largest_batch = max(result.largest_batch, deleted)
        if progress is not None:
            progress(result)
        if len(rows) < batch_size:
            return
