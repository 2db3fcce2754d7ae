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

# state -> every state the runtime's code (agent/lifecycle.rs, agent/agent.rs) may move it to, each
# named by the operation that makes the move. Two operations reach every state but Terminated, so they
# are in every row below: kill (any -> Terminated, or -> Error when the kill itself fails:
# ``Agent::kill`` sets Error whatever the state was). Terminated is terminal: the runtime drops the
# agent from its pool, nothing moves it again.
TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    # spawn: Created -> Starting -> Running (Starting -> Error on failure); kill
    S.CREATED: frozenset({S.STARTING, S.TERMINATED, S.ERROR}),
    S.STARTING: frozenset({S.RUNNING, S.TERMINATED, S.ERROR}),
    # execute (-> Processing), pause, stop, kill, a failed health check while active (-> Error)
    S.RUNNING: frozenset({S.PROCESSING, S.PAUSED, S.STOPPING, S.TERMINATED, S.ERROR}),
    S.IDLE: frozenset({S.PROCESSING, S.PAUSED, S.STOPPING, S.TERMINATED, S.ERROR}),
    # execute done (-> Idle) or failed (-> Error), stop, kill, a failed health check
    S.PROCESSING: frozenset({S.IDLE, S.STOPPING, S.TERMINATED, S.ERROR}),
    # resume, stop, kill (or its failure)
    S.PAUSED: frozenset({S.RUNNING, S.STOPPING, S.TERMINATED, S.ERROR}),
    # the stop ends (-> Terminated) or fails (-> Error); kill
    S.STOPPING: frozenset({S.TERMINATED, S.ERROR}),
    # an Error agent can still be stopped (can_stop) or killed
    S.ERROR: frozenset({S.STOPPING, S.TERMINATED}),
    S.TERMINATED: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the agent lifecycle forbids; nothing was changed."""

    def __init__(self, current: str, target: str) -> None:
        allowed = ", ".join(sorted(allowed_targets(current))) or "none (terminal state)"
        super().__init__(f"An agent cannot move from {current} to {target}. From {current} it may move to: {allowed}.")
        self.current = current
        self.target = target


# The same table by plain names, read once: the bridge asks it for every state event it applies, and
# Django's ``AgentState.values`` builds a new list on each access.
STATE_NAMES = frozenset(str(state) for state in AgentState)
_ALLOWED_BY_NAME = {str(state): frozenset(str(target) for target in targets) for state, targets in TRANSITIONS.items()}


def allowed_targets(current: str) -> frozenset[str]:
    """Every state reachable in one move from ``current`` (the table's row: kill included)."""
    allowed = _ALLOWED_BY_NAME.get(current)
    if allowed is None:
        raise ValueError(f"{current!r} is not a valid AgentState")
    return allowed


def check_transition(current: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is a legal move."""
    if target not in STATE_NAMES:
        raise IllegalTransition(current, target)
    if target not in allowed_targets(current):
        raise IllegalTransition(current, target)
