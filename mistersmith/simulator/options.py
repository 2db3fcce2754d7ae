"""What the simulator is told to do, and what it reports back."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEFAULT_CONSUMER = "mistersmith-simulator"
CONSUMER_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")  # NATS forbids ".", "*", ">" and spaces


@dataclass
class SimulatorOptions:
    rate: float = 20.0  # events per second on agent.> and supervision.>, at most
    failure_rate: float = 0.05  # failures injected per second, on average
    restart_failure_ratio: float = 0.1  # share of restarts answered with success false
    nodes: int = 30  # size of the tree created in an empty database
    sample: int = 500  # how many existing agent nodes are animated, at most
    seed: int | None = None
    duration: float = 0.0  # seconds; 0 runs until stopped
    restarts: bool = True  # answer RestartNode commands
    commands: bool = True  # answer agent commands (Pause, Resume, Stop, Status, HealthCheck ...) on agent.command
    events: bool = True  # background activity: shared discoveries (and, with rich_events, the chatter below)
    rich_events: bool = False  # also what the runtime never publishes: StateChanged, Output, Error, Heartbeat,
    # supervision.* lifecycle/health/error/task events, system.health reports, per-agent discovery subjects
    heartbeat_interval: float = 2.0  # seconds between the batched heartbeats of running instances
    consumer_name: str = DEFAULT_CONSUMER
    nats_url: str | None = None  # None: the console's NATS
    database_url: str | None = None  # None: the console's database

    @property
    def burst(self) -> float:
        """Events that may leave at once after a quiet spell: a tenth of a second's worth, at least one."""
        return max(1.0, self.rate / 10)

    def validate(self) -> None:
        """Raise ValueError naming every bad option (the command turns it into a CommandError)."""
        problems = [
            f"--{name.replace('_', '-')} must be a number ≥ 0 (got {getattr(self, name)})"
            for name in ("rate", "failure_rate", "duration", "heartbeat_interval")
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0)
        ]
        if self.heartbeat_interval == 0:
            problems.append("--heartbeat-interval must be above 0")
        if not 0 <= self.restart_failure_ratio <= 1:
            problems.append(f"--restart-failure-ratio must be between 0 and 1 (got {self.restart_failure_ratio})")
        if self.nodes < 2:
            problems.append(f"--nodes must be at least 2, a root and one child (got {self.nodes})")
        if self.sample < 1:
            problems.append(f"--sample must be at least 1 (got {self.sample})")
        if not CONSUMER_NAME.fullmatch(self.consumer_name or ""):
            problems.append(f"--consumer-name may hold letters, digits, - and _ only (got {self.consumer_name!r})")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class SimulatorStats:
    """Counts kept while running; readable from another thread at any time."""

    events_published: int = 0
    publish_errors: int = 0
    failures_injected: int = 0
    restarts_ok: int = 0
    restarts_failed: int = 0
    duplicate_commands: int = 0
    ignored_messages: int = 0  # system.control messages not for us: other variants, our answers, unknown nodes
    nodes_created: int = 0
    commands_ok: int = 0  # agent.command requests answered with Success
    commands_refused: int = 0  # answered with Error: an illegal move, an unreadable command
    broadcasts_published: int = 0  # discoveries and system.health reports (outside the rate budget)
    command_events_published: int = 0  # events of commanded moves: answers, so outside the rate budget
    agents_animated: int = 0
    agents_spawned: int = 0
    commands_unreadable: int = 0  # refused by the parser: no reply, as the runtime's handler
    system_notices: int = 0  # "Startup" / "Shutdown" taken
    system_answers: int = 0  # PoolStatus and SystemHealth requests answered on their reply_to
    supervisor_restarts_ok: int = 0  # restarts a supervisor made by its policy after a failure
    supervisor_restarts_failed: int = 0
    escalations: int = 0  # failures passed to the parent because should_restart said no
    heartbeat_batches: int = 0
    elapsed_seconds: float = 0.0  # from the first token to the stop: rate * this + burst bounds the events

    def summary(self) -> str:
        return (
            f"{self.events_published} events in {self.elapsed_seconds:.1f} s, {self.failures_injected} failures, "
            f"restarts answered: {self.restarts_ok} ok, {self.restarts_failed} failed "
            f"({self.duplicate_commands} duplicates ignored); agent commands: {self.commands_ok} carried out, "
            f"{self.commands_refused} refused; supervisors restarted {self.supervisor_restarts_ok} "
            f"({self.supervisor_restarts_failed} failed), {self.escalations} escalated; "
            f"{self.agents_animated} agents animated, "
            f"{self.nodes_created} nodes created, {self.publish_errors} publish errors"
        )
