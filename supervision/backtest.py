"""Policy backtest: what a policy would have done with a node's recorded failures.

"Over the last N days this policy would have made X restarts and Y escalations, with Z s of
restart delay": the node's failures (``supervision_failures``, oldest first) are replayed through
the runtime's own rules, as its supervisor meets them (the simulator, mistersmith/simulator,
decides the same way):

1. the failure is recorded first, so ``should_restart(node)`` counts it: a restart is allowed while
   the failures in ``(t - time_window_seconds, t]`` (this one included) number fewer than
   ``max_restarts``;
2. the attempt is the node's restarts inside the window before this one, plus one (what
   services.plan_restart and the simulator pass), and its delay is
   ``calculate_restart_delay(policy, attempt)``, the runtime's SQL function itself;
3. Escalate strategy, or a failure reason among ``escalate_on_error_types``: the failure goes to
   the parent at once; a failure refused at the limit goes there when ``escalate_on_limit``, else
   it is left (the node stays failed).

``should_restart`` itself answers only for ``now()``; the replay applies its rule at each failure's
instant with a window function (one pass, no query per failure), and the tests hold the replay's
answer for a failure at ``now()`` to ``should_restart``. The delays are the SQL function's, called
once per distinct attempt.

One statement per policy. The saved policy is replayed as it is. Unsaved values (the form being
edited) are written into the node's policy row by the runtime's own upsert (``ON CONFLICT
(node_id)``) inside a savepoint that is always rolled back: ``calculate_restart_delay`` reads the
policy by id, so this is how the runtime's function sees values nobody saved, without a copy of it.
Nobody else ever sees the staged row (MVCC); a concurrent write of that one policy waits for the
rollback, at most :data:`LOCK_TIMEOUT` plus :data:`STATEMENT_TIMEOUT`.

Bounded work: at most :data:`REPLAY_CAP` failures are read, the newest, from the node's
(node_id, occurred_at) index. A decision at ``t`` depends on the failures of the two windows before
it (its own count, and the counts of the restarts before it), so failures are read back to two
windows before the period; when the cap cuts them, only failures two windows after the oldest read
are replayed, and the answer says from when (``replayed_since``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, connection, transaction

from supervision.models import SupervisionNode, SupervisionPolicy
from supervision.state_diff import POLICY_FIELDS

PERIODS_DAYS = (1, 7, 30)
REPLAY_CAP = 20_000  # failures read per replay (the newest)
LINT_ATTEMPTS = 1_000  # delays computed for the crash-loop lint (attempts 1..min(max_restarts - 1, this))
LOCK_TIMEOUT = "1s"  # the staged policy row waits no longer for a concurrent writer of it
STATEMENT_TIMEOUT = "5s"

# The policy's settings a backtest replays: the fields that decide (state_diff's list) but the
# escalation timeout, which changes when an escalation happens, not whether.
SETTINGS_FIELDS = tuple(name for name in POLICY_FIELDS if name != "escalation_timeout_seconds")

# The replay, parameters: node, policy (its id: calculate_restart_delay reads the row), window (an
# interval one microsecond shorter than the policy's: RANGE frames include their start, the
# runtime's window excludes it), longest (days: failures read back to two windows before it), cap,
# periods (days), lint_attempts.
REPLAY_SQL = """
WITH p AS (
    SELECT id, supervision_strategy::text AS strategy, max_restarts, escalate_on_limit,
           escalate_on_error_types, make_interval(secs => time_window_seconds) AS window_length
    FROM supervision_policies WHERE id = %(policy)s
),
loaded AS (
    SELECT f.id, f.occurred_at, f.failure_reason::text AS reason
    FROM supervision_failures f
    WHERE f.node_id = %(node)s
      AND f.occurred_at > now() - make_interval(days => %(longest)s) - 2 * (SELECT window_length FROM p)
    ORDER BY f.occurred_at DESC
    LIMIT %(cap)s + 1
),
edge AS (
    -- Cut by the cap: only failures two windows after the oldest read have every failure their
    -- decision depends on.
    SELECT CASE WHEN count(*) > %(cap)s THEN min(occurred_at) + 2 * (SELECT window_length FROM p) END AS since
    FROM loaded
),
counted AS (
    -- Failures in (t - window, t], this one included, ties at t counted up to this one (id order).
    SELECT l.*,
           count(*) OVER recent - (count(*) OVER same_instant - row_number() OVER same_instant_in_order)
               AS in_window
    FROM loaded l
    WINDOW recent AS (ORDER BY occurred_at RANGE BETWEEN %(window)s PRECEDING AND CURRENT ROW),
           same_instant AS (PARTITION BY occurred_at),
           same_instant_in_order AS (PARTITION BY occurred_at ORDER BY id)
),
decided AS (
    SELECT c.*, c.in_window >= p.max_restarts AS at_limit,
           CASE WHEN p.strategy = 'Escalate' OR c.reason = ANY(p.escalate_on_error_types) THEN 'escalate'
                WHEN c.in_window < p.max_restarts THEN 'restart'
                WHEN p.escalate_on_limit THEN 'escalate'
                ELSE 'left' END AS decision
    FROM counted c CROSS JOIN p
),
numbered AS (
    -- The attempt: the restarts inside the window before this failure, plus one.
    SELECT d.*,
           CASE WHEN d.decision = 'restart' THEN 1 + (
               count(*) FILTER (WHERE d.decision = 'restart') OVER recent
               - count(*) FILTER (WHERE d.decision = 'restart') OVER same_instant_from_last
           )::int END AS attempt
    FROM decided d
    WINDOW recent AS (ORDER BY occurred_at RANGE BETWEEN %(window)s PRECEDING AND CURRENT ROW),
           same_instant_from_last AS (PARTITION BY occurred_at ORDER BY id DESC)
),
delays AS (
    SELECT attempt, calculate_restart_delay(%(policy)s, attempt) AS delay_ms
    FROM (SELECT DISTINCT attempt FROM numbered WHERE attempt IS NOT NULL) used
),
replayed AS (
    SELECT n.*, d.delay_ms,
           floor(extract(epoch FROM now() - n.occurred_at) / 86400)::int AS days_ago
    FROM numbered n LEFT JOIN delays d ON d.attempt = n.attempt
    WHERE n.occurred_at > coalesce((SELECT since FROM edge), '-infinity')
)
SELECT period.days,
       count(r.id),
       count(r.id) FILTER (WHERE r.decision = 'restart'),
       count(r.id) FILTER (WHERE r.decision = 'escalate'),
       count(r.id) FILTER (WHERE r.decision = 'left'),
       coalesce(sum(r.delay_ms), 0),
       count(DISTINCT r.days_ago) FILTER (WHERE r.at_limit),
       (SELECT since FROM edge),
       (SELECT array_agg(calculate_restart_delay(%(policy)s, a) ORDER BY a)
        FROM generate_series(1, least((SELECT max_restarts FROM p) - 1, %(lint_attempts)s::int)) AS a),
       now()
FROM unnest(%(periods)s::int[]) AS period(days)
LEFT JOIN replayed r ON r.occurred_at > now() - make_interval(days => period.days)
GROUP BY period.days
ORDER BY period.days
"""

# The runtime's own upsert of a policy, for values nobody saved (always rolled back).
STAGE_SQL = """
INSERT INTO supervision_policies (node_id, supervision_strategy, max_restarts, time_window_seconds,
    backoff_strategy, backoff_factor, min_restart_delay_ms, max_restart_delay_ms, escalate_on_limit,
    escalate_on_error_types)
VALUES (%(node)s, %(supervision_strategy)s::supervision_strategy, %(max_restarts)s, %(time_window_seconds)s,
    %(backoff_strategy)s::backoff_strategy, %(backoff_factor)s, %(min_restart_delay_ms)s,
    %(max_restart_delay_ms)s, %(escalate_on_limit)s, %(escalate_on_error_types)s)
ON CONFLICT (node_id) DO UPDATE SET
    supervision_strategy = EXCLUDED.supervision_strategy, max_restarts = EXCLUDED.max_restarts,
    time_window_seconds = EXCLUDED.time_window_seconds, backoff_strategy = EXCLUDED.backoff_strategy,
    backoff_factor = EXCLUDED.backoff_factor, min_restart_delay_ms = EXCLUDED.min_restart_delay_ms,
    max_restart_delay_ms = EXCLUDED.max_restart_delay_ms, escalate_on_limit = EXCLUDED.escalate_on_limit,
    escalate_on_error_types = EXCLUDED.escalate_on_error_types
RETURNING id
"""


class BacktestBusy(Exception):
    """The node's policy row is being written right now; the edited values could not be staged."""


@dataclass(frozen=True)
class PeriodFigures:
    """What the policy would have done with the failures of the last ``days`` days."""

    days: int
    failures: int
    restarts: int
    escalations: int
    left: int  # refused at the limit without escalate_on_limit: neither restarted nor escalated
    delay_ms: int
    days_at_limit: int  # days (24 h back from now) on which should_restart said no at least once

    def as_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "failures": self.failures,
            "restarts": self.restarts,
            "escalations": self.escalations,
            "left": self.left,
            "delay_seconds": round(self.delay_ms / 1000, 1),
            "days_at_limit": self.days_at_limit,
        }


@dataclass(frozen=True)
class Backtest:
    """One policy's figures for each period, from one replay."""

    periods: list[PeriodFigures]
    replayed_since: datetime | None  # set when the cap cut the history: figures start there
    delays_ms: list[int] = field(default_factory=list)  # attempts 1..max_restarts-1 (at most LINT_ATTEMPTS)
    now: datetime | None = None  # the database's now(): the periods end there

    def period(self, days: int) -> PeriodFigures | None:
        return next((figures for figures in self.periods if figures.days == days), None)

    def covers(self, days: int) -> bool:
        """Whether the replay saw every failure of the last ``days`` days (the cap did not cut them)."""
        return self.replayed_since is None or (
            self.now is not None and self.replayed_since <= self.now - timedelta(days=days)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "periods": [figures.as_json() for figures in self.periods],
            "replayed_since": None if self.replayed_since is None else self.replayed_since.isoformat(),
        }


def settings_of(policy: SupervisionPolicy) -> dict[str, Any]:
    """The settings a backtest replays, from a policy (saved or built from a form)."""
    return {name: getattr(policy, name) for name in SETTINGS_FIELDS}


def replay(node_pk: uuid.UUID, policy_pk: uuid.UUID, window_seconds: int, periods: tuple[int, ...]) -> Backtest:
    """The figures of the policy row ``policy_pk`` (of its window ``window_seconds``) over the node's
    failures of each of ``periods`` days: one statement."""
    window = timedelta(seconds=window_seconds)
    with connection.cursor() as cursor:
        cursor.execute(
            REPLAY_SQL,
            {
                "node": node_pk,
                "policy": policy_pk,
                "window": window - timedelta(microseconds=1),
                "longest": max(periods),
                "cap": REPLAY_CAP,
                "periods": list(periods),
                "lint_attempts": LINT_ATTEMPTS,
            },
        )
        rows = cursor.fetchall()
    figures = [PeriodFigures(*row[:7]) for row in rows]
    return Backtest(figures, replayed_since=rows[0][7], delays_ms=list(rows[0][8] or []), now=rows[0][9])


def backtest_saved(policy: SupervisionPolicy, periods: tuple[int, ...] = PERIODS_DAYS) -> Backtest:
    """The saved policy's figures, as the runtime would have decided with it."""
    return replay(policy.node_id, policy.pk, policy.time_window_seconds, periods)


def backtest_settings(
    node: SupervisionNode, settings: dict[str, Any], periods: tuple[int, ...] = PERIODS_DAYS
) -> Backtest:
    """The figures of unsaved ``settings`` (:data:`SETTINGS_FIELDS`) for ``node``: staged in the
    node's policy row inside a savepoint, replayed, rolled back (see the module docstring).
    Raises :class:`BacktestBusy` when the row is locked by a writer for longer than LOCK_TIMEOUT."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
                cursor.execute(STAGE_SQL, {"node": node.pk, **settings})
                (policy_pk,) = cursor.fetchone()
            result = replay(node.pk, policy_pk, settings["time_window_seconds"], periods)
            transaction.set_rollback(True)
    except OperationalError as error:
        raise BacktestBusy(
            f"The policy of {node} is being written right now; try again in a moment ({error})."
        ) from error
    return result
