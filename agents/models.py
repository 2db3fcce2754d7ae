"""Agents, their instances and interactive sessions.

``agents`` and ``agent_instances`` are tables the runtime references but never published
(CONTRACTS.md §1); their SQL is in the migrations so that a row with only the columns the
runtime knows (id, name, agent_type, status, supervision_node_id / agent_id, status,
last_heartbeat, host_name, port) is accepted: every other column has a database default.
Sessions and their messages are the console's own (the runtime keeps them in memory).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Now

from agents.lifecycle import AgentState, check_transition

DEFAULT_MODEL = "claude-3-5-sonnet-20241022"
DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_MEMORY_LIMIT_MB = 512


class InstanceStatus(models.TextChoices):
    STARTING = "starting", "starting"
    RUNNING = "running", "running"
    STOPPING = "stopping", "stopping"
    STOPPED = "stopped", "stopped"
    ERROR = "error", "error"
    CRASHED = "crashed", "crashed"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.TextField()
    agent_type = models.TextField(default="claude", db_default="claude")
    status = models.TextField(
        choices=AgentState.choices, default=AgentState.CREATED, db_default=AgentState.CREATED.value
    )
    supervision_node = models.ForeignKey(
        "supervision.SupervisionNode",
        on_delete=models.DO_NOTHING,  # the database sets it to NULL
        db_column="supervision_node_id",
        null=True,
        blank=True,
        related_name="+",
    )
    # AgentConfig, with the runtime's defaults.
    model = models.TextField(default=DEFAULT_MODEL, db_default=DEFAULT_MODEL)
    max_turns = models.IntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    allowed_tools = ArrayField(models.TextField(), null=True, blank=True, help_text="Empty: every tool.")
    enable_mcp = models.BooleanField(default=True, db_default=True)
    timeout_seconds = models.IntegerField(
        default=DEFAULT_TIMEOUT_SECONDS, db_default=DEFAULT_TIMEOUT_SECONDS, validators=[MinValueValidator(1)]
    )
    memory_limit_mb = models.IntegerField(
        null=True,
        blank=True,
        default=DEFAULT_MEMORY_LIMIT_MB,
        db_default=DEFAULT_MEMORY_LIMIT_MB,
        validators=[MinValueValidator(1)],
    )
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)
    state_changed_at = models.DateTimeField(db_default=Now(), editable=False)
    last_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "agents"
        ordering = ["name"]
        permissions = [("command_agent", "Can send commands to an agent")]

    def __str__(self) -> str:
        return self.name

    def transition_to(self, target: str) -> None:
        """Move to ``target`` if the lifecycle allows it; raise IllegalTransition otherwise.

        Reads the current state under a row lock so two movers cannot both pass the check.
        """
        with transaction.atomic():
            current = Agent.objects.select_for_update().values_list("status", flat=True).get(pk=self.pk)
            check_transition(current, target)
            Agent.objects.filter(pk=self.pk).update(status=target, state_changed_at=Now(), updated_at=Now())
        self.status = target


class AgentInstance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.DO_NOTHING, db_column="agent_id", related_name="instances")
    status = models.TextField(
        choices=InstanceStatus.choices, default=InstanceStatus.STARTING, db_default=InstanceStatus.STARTING.value
    )
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    host_name = models.TextField(null=True, blank=True)
    port = models.IntegerField(null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(65535)])
    started_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "agent_instances"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        where = f"{self.host_name}:{self.port}" if self.host_name else "unknown host"
        return f"{self.agent_id} on {where} ({self.status})"


class SessionState(models.TextChoices):
    STARTING = "Starting", "Starting"
    READY = "Ready", "Ready"
    PROCESSING = "Processing", "Processing"
    ERROR = "Error", "Error"
    TERMINATED = "Terminated", "Terminated"


class InteractiveSession(models.Model):
    """One long-lived CLI process driven by an agent, with its conversation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sessions", null=True, blank=True)
    state = models.CharField(max_length=16, choices=SessionState.choices, default=SessionState.STARTING)
    error = models.TextField(blank=True, help_text="The text of an Error state.")
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="The CLI process id.")
    model = models.TextField(default=DEFAULT_MODEL)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["state", "-started_at"])]

    def __str__(self) -> str:
        return f"session {str(self.id)[:8]} ({self.state})"


class MessageRole(models.TextChoices):
    USER = "user", "user"
    ASSISTANT = "assistant", "assistant"


class SessionMessage(models.Model):
    session = models.ForeignKey(InteractiveSession, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField(help_text="Order within the session, from 0.")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField()
    timestamp = models.DateTimeField()
    stream_sequence = models.BigIntegerField(
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="AGENT_EVENTS sequence of the Output this message projects (empty: written by the console).",
    )

    class Meta:
        ordering = ["session", "position"]
        constraints = [models.UniqueConstraint(fields=["session", "position"], name="session_message_position_unique")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class AgentAnomaly(models.Model):
    """An event the console could not apply: a move the lifecycle forbids, an unknown agent.

    Kept for operators instead of being forced into the projection.
    """

    agent_id = models.UUIDField(db_index=True)
    event_kind = models.CharField(max_length=32)
    current_state = models.CharField(max_length=16, blank=True)
    attempted_state = models.CharField(max_length=16, blank=True)
    detail = models.TextField()
    stream_sequence = models.BigIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-recorded_at"]
        verbose_name_plural = "agent anomalies"

    def __str__(self) -> str:
        return f"{self.event_kind} for {self.agent_id}: {self.detail[:60]}"


class DiscoveryType(models.TextChoices):
    PATTERN = "Pattern", "Pattern"
    ANOMALY = "Anomaly", "Anomaly"
    CONNECTION = "Connection", "Connection"
    SOLUTION = "Solution", "Solution"
    QUESTION = "Question", "Question"
    INSIGHT = "Insight", "Insight"


class Discovery(models.Model):
    """One shared discovery of an agent; the store holds the newest 1,000 (agents.discoveries)."""

    message_id = models.CharField(max_length=200, null=True, blank=True)
    agent_id = models.CharField(max_length=100, db_index=True)
    agent_role = models.CharField(max_length=100)
    discovery_type = models.CharField(max_length=16, choices=DiscoveryType.choices, db_index=True)
    content = models.TextField()
    confidence = models.FloatField()
    timestamp = models.DateTimeField(db_index=True)
    # Whole: related_to may quote a whole earlier discovery (the stream allows 64 KiB a message).
    related_to = models.TextField(null=True, blank=True)
    stream_sequence = models.BigIntegerField(null=True, blank=True, unique=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name_plural = "discoveries"

    def __str__(self) -> str:
        return f"{self.discovery_type} by {self.agent_role}: {self.content[:60]}"

    def as_contract(self) -> dict:
        """The runtime's JSON shape of a discovery (CONTRACTS.md §4)."""
        return {
            "agent_id": self.agent_id,
            "agent_role": self.agent_role,
            "discovery_type": self.discovery_type,
            "content": self.content,
            "confidence": self.confidence,
            "timestamp": self.timestamp.isoformat(),
            "related_to": self.related_to,
        }


class AgentCommand(models.TextChoices):
    """The commands the console sends on ``agent.command`` (CONTRACTS.md §3), by their variant name."""

    PAUSE = "Pause", "Pause"
    RESUME = "Resume", "Resume"
    STOP = "Stop", "Stop"
    STATUS = "Status", "Status"
    HEALTH_CHECK = "HealthCheck", "Health check"


class CommandOutcome(models.TextChoices):
    OK = "ok", "ok: the runtime carried it out"
    REFUSED = "refused", "refused by the console before sending"
    TIMEOUT = "timeout", "timeout: no answer in time"
    ERROR = "error", "error: the runtime refused or failed, or its reply was unreadable"
    UNAVAILABLE = "unavailable", "unavailable: NATS or the runtime could not be reached"


class BulkCommandRun(models.Model):
    """One bulk Pause, Resume or Stop of many agents (agents.bulk): who asked, for which agents, and
    when it ended. Each agent's command is an :class:`AgentCommandRecord` pointing here, written as
    its answer comes; the run's page lists them (an agent without one yet is still pending)."""

    class Scope(models.TextChoices):
        SELECTION = "selection", "the selected agents"
        FILTER = "filter", "every agent matching a filter"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    command = models.CharField(max_length=16, choices=AgentCommand.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    filters = models.JSONField(default=dict, blank=True, help_text="The list's filter, for scope 'filter'.")
    agent_ids = models.JSONField(default=list, help_text="The agents, in the order they are sent.")
    total = models.PositiveIntegerField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"{self.command} of {self.total} agents by {self.requested_by_name or 'someone'}"


class AgentCommandRecord(models.Model):
    """Who sent which command to which agent, and what came of it (written by agents.commands only).

    ``agent_id`` is a plain UUID, not a foreign key: the record outlives the agent's row.
    """

    agent_id = models.UUIDField()  # indexed with requested_at (Meta.indexes)
    agent_name = models.TextField(blank=True, help_text="The agent's name when the command was sent.")
    command = models.CharField(max_length=16, choices=AgentCommand.choices)
    arguments = models.JSONField(default=dict, blank=True, help_text="The command's body as sent (or refused).")
    message_id = models.UUIDField(null=True, blank=True, help_text="The command envelope's message_id.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True, help_text="The username, kept if the user goes.")
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=CommandOutcome.choices)
    detail = models.TextField(blank=True, help_text="What the console told the user.")
    response_excerpt = models.TextField(blank=True, help_text="The start of the runtime's reply, as received.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="From sending to the answer.")
    bulk_run = models.ForeignKey(
        BulkCommandRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="records", editable=False
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["agent_id", "-requested_at"], name="agent_cmd_agent_time_idx")]

    def __str__(self) -> str:
        return f"{self.command} to {self.agent_name or self.agent_id}: {self.outcome}"
