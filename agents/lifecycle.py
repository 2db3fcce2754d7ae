"""The agent lifecycle (CONTRACTS.md §2) as one transition table.

Every change of an agent's state goes through :func:`check_transition`; the bridge, the
services and the admin all ask this table, so there is one answer to "may it move?".
"""

from __future__ import annotations

from django.db import models


class AgentState(models.TextChoices):
    CREATED = "Created", "Created"
    STARTING = "Starting", "Starting"
    RUNNING = "Running", "Running"
    PAUSED = "Paused", "Paused"
    IDLE = "Idle", "Idle"
    PROCESSING = "Processing", "Processing"
    STOPPING = "Stopping", "Stopping"
    TERMINATED = "Terminated", "Terminated"
    ERROR = "Error", "Error"


S = AgentState
ACTIVE_STATES = frozenset({S.RUNNING, S.IDLE, S.PROCESSING})
TERMINAL_STATES = frozenset({S.TERMINATED, S.ERROR})

# state -> the states it may move to, named by the runtime's operation that moves it.
TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.CREATED: frozenset({S.STARTING}),  # spawn
    S.STARTING: frozenset({S.RUNNING, S.ERROR}),  # spawn succeeds or fails
    S.RUNNING: frozenset({S.PROCESSING, S.PAUSED, S.STOPPING, S.ERROR}),  # execute, pause, stop, failed health
    S.IDLE: frozenset({S.PROCESSING, S.PAUSED, S.STOPPING, S.ERROR}),
    S.PROCESSING: frozenset({S.IDLE, S.STOPPING, S.ERROR}),  # execute done, stop, failed health
    S.PAUSED: frozenset({S.RUNNING, S.STOPPING}),  # resume, stop
    S.STOPPING: frozenset({S.TERMINATED}),
    S.ERROR: frozenset({S.STOPPING}),  # stop is allowed from Error, which then ends Terminated
    S.TERMINATED: frozenset(),
}
# kill: any state -> Terminated.
KILL_TARGET = S.TERMINATED


class IllegalTransition(ValueError):
    """A move the agent lifecycle forbids; nothing was changed."""

    def __init__(self, current: str, target: str) -> None:
        allowed = ", ".join(sorted(allowed_targets(current))) or "none (terminal state)"
        super().__init__(f"An agent cannot move from {current} to {target}. From {current} it may move to: {allowed}.")
        self.current = current
        self.target = target


def allowed_targets(current: str) -> frozenset[str]:
    """Every state reachable in one move from ``current`` (kill included)."""
    moves = TRANSITIONS.get(AgentState(current), frozenset())
    if current != KILL_TARGET:
        moves = moves | {KILL_TARGET}
    return frozenset(str(state) for state in moves)


def check_transition(current: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is a legal move."""
    if target not in AgentState.values:
        raise IllegalTransition(current, target)
    if target not in allowed_targets(current):
        raise IllegalTransition(current, target)
