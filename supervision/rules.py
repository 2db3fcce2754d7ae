"""The runtime's two restart rules in Python, answer for answer the same as the SQL functions.

``should_restart(node)`` and ``calculate_restart_delay(policy, attempt)`` live in PostgreSQL
because the runtime calls them by name; these mirrors let the console explain a decision (the
policy form's delay preview, the restart confirmation) without a round trip, and the tests hold
the two implementations to each other.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, Overflow, localcontext
from typing import Protocol

DEFAULT_MAX_RESTARTS = 5
DEFAULT_TIME_WINDOW_SECONDS = 60
DEFAULT_MIN_DELAY_MS = 100
DEFAULT_MAX_DELAY_MS = 30_000
DEFAULT_BACKOFF_FACTOR = Decimal("2.00")
LINEAR_STEP_MS = 1000


class PolicyLike(Protocol):
    backoff_strategy: str
    backoff_factor: Decimal | None
    min_restart_delay_ms: int
    max_restart_delay_ms: int
    max_restarts: int


def restart_allowed(policy: PolicyLike | None, failures_in_window: int) -> bool:
    """``should_restart``: no policy, no restart; else fewer failures in the window than the maximum."""
    if policy is None:
        return False
    return failures_in_window < policy.max_restarts


def restart_delay_ms(policy: PolicyLike, attempt: int) -> int:
    """``calculate_restart_delay``: Fixed = min; Linear = min + 1000 x attempt;
    Exponential = min x factor^(attempt - 1) (a NULL factor counts as the column default 2.0);
    never above the maximum. Rounded half away from zero, as PostgreSQL casts numeric to integer."""
    minimum, maximum = policy.min_restart_delay_ms, policy.max_restart_delay_ms
    if policy.backoff_strategy == "Fixed":
        delay = Decimal(minimum)
    elif policy.backoff_strategy == "Linear":
        delay = Decimal(minimum) + LINEAR_STEP_MS * attempt
    elif policy.backoff_strategy == "Exponential":
        factor = policy.backoff_factor if policy.backoff_factor is not None else DEFAULT_BACKOFF_FACTOR
        with localcontext() as context:
            context.prec = 60
            context.traps[Overflow] = True
            try:
                delay = Decimal(minimum) * Decimal(factor) ** (attempt - 1)
            except (Overflow, InvalidOperation):
                return maximum
    else:
        raise ValueError(f"Unknown backoff strategy {policy.backoff_strategy!r}")
    return _round(min(delay, Decimal(maximum)))


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
