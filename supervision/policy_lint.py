"""Policy lint: settings prone to crash loops, warned about before a policy is saved.

Warnings, never errors: the runtime accepts these policies and an admin may mean them. Each rule
is a pure function of the values it judges (the delays come from the runtime's
``calculate_restart_delay``, through supervision/backtest.py), so it is tested without a database;
:func:`lint_policy` runs them all.

- **window_shorter_than_delays**: the runtime counts failures inside the window (the failure at hand
  included) and stops restarting at ``max_restarts``. A node that fails at once after every restart
  has its ``max_restarts``-th failure after the delays of attempts 1..max_restarts-1; when those add
  up to the window or more, the first failure has left the window by then, the limit is never
  reached, and the node is restarted forever.
- **limit_reached_every_day**: the node's recorded failures reached ``max_restarts`` inside a window
  on every day of the last 7 (or 30) days: the limit is routine, not an exception.
- **escalate_on_root**: strategy Escalate on a node with nothing above it (a RootSupervisor, or no
  parent): its failures go nowhere and it is never restarted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from supervision.backtest import Backtest, backtest_saved, settings_of
from supervision.models import SupervisionNode, SupervisionPolicy

HISTORY_PERIODS_DAYS = (30, 7)  # the longest period whose every day reached the limit is named


@dataclass(frozen=True)
class LintWarning:
    rule: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def _seconds(milliseconds: int) -> str:
    return f"{milliseconds / 1000:g} s"


def window_shorter_than_delays(max_restarts: int, window_seconds: int, delays_ms: Sequence[int]) -> LintWarning | None:
    """``delays_ms``: the delays of attempts 1..max_restarts-1 (or the first of them: delays never
    shrink with the attempt, so the rest are counted at the last one's length, a lower bound)."""
    restarts = max_restarts - 1  # the failure at the limit is counted, not restarted
    if restarts < 1 or not delays_ms:
        return None
    total = sum(delays_ms) + (restarts - len(delays_ms)) * delays_ms[-1]
    if total < window_seconds * 1000:
        return None
    return LintWarning(
        "window_shorter_than_delays",
        f"Crash loop: the {restarts} restart(s) a window allows wait {_seconds(total)} in all, not less than "
        f"the {window_seconds} s window. A node that fails at once after every restart never has "
        f"{max_restarts} failures inside one window, so the limit never stops it. Lengthen the window, "
        "lower max restarts or shorten the delays.",
    )


def limit_reached_every_day(max_restarts: int, days_at_limit: dict[int, int]) -> LintWarning | None:
    """``days_at_limit``: for a period of N days fully replayed, on how many of its days the node's
    failures reached ``max_restarts`` inside a window (should_restart said no)."""
    for days in HISTORY_PERIODS_DAYS:
        reached = days_at_limit.get(days)
        if reached is not None and reached >= days:
            return LintWarning(
                "limit_reached_every_day",
                f"The node's failures reached max restarts ({max_restarts}) inside a window on every one of "
                f"the last {days} days: at this limit the runtime stops restarting it daily. Raise max "
                "restarts, or fix what makes it fail.",
            )
    return None


def escalate_on_root(strategy: str, node_type: str, has_parent: bool) -> LintWarning | None:
    if strategy != "Escalate" or (has_parent and node_type != "RootSupervisor"):
        return None
    return LintWarning(
        "escalate_on_root",
        "Escalate on a root: nothing is above this node to take its failures, so they are neither "
        "restarted nor handled. Choose OneForOne, OneForAll or RestForOne.",
    )


def lint_policy(settings: dict[str, Any], node: SupervisionNode, backtest: Backtest) -> list[LintWarning]:
    """Every rule's warning for ``settings`` (the policy's fields) on ``node``, with ``backtest`` (the
    same settings replayed: the runtime's delays, and the days at the limit of the periods the
    replay saw whole)."""
    days_at_limit = {
        figures.days: figures.days_at_limit for figures in backtest.periods if backtest.covers(figures.days)
    }
    found = [
        window_shorter_than_delays(settings["max_restarts"], settings["time_window_seconds"], backtest.delays_ms),
        limit_reached_every_day(settings["max_restarts"], days_at_limit),
        escalate_on_root(settings["supervision_strategy"], node.node_type, node.parent_id is not None),
    ]
    return [warning for warning in found if warning is not None]


def lint_saved(policy: SupervisionPolicy) -> list[LintWarning]:
    """The warnings of a policy as saved (the admin shows them after a save): its own replay."""
    return lint_policy(settings_of(policy), policy.node, backtest_saved(policy, periods=HISTORY_PERIODS_DAYS))
