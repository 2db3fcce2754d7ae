"""The runtime's supervision tables (CONTRACTS.md §1), mirrored as Django models.

The runtime writes these tables itself, so the schema is created by raw SQL in the migrations
(enum types, checks, ON DELETE CASCADE, triggers, functions) and the models describe it.
Foreign keys to a node use ``DO_NOTHING`` on the Python side because PostgreSQL cascades:
deleting a node with a million failures is one statement, not a million-row collector.

Database checks are mirrored in ``clean()`` so the admin shows a form error on the right field
instead of an IntegrityError.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now

from supervision import rules
from supervision.fields import PgEnumField

FAILURE_DETAIL_MAX_LENGTH = 5000


class NodeType(models.TextChoices):
    ROOT_SUPERVISOR = "RootSupervisor", "RootSupervisor"
    AGENT_SUPERVISOR = "AgentSupervisor", "AgentSupervisor"
    WORKER = "Worker", "Worker"
    SERVICE = "Service", "Service"


class NodeStatus(models.TextChoices):
    ACTIVE = "active", "active"
    INACTIVE = "inactive", "inactive"
    FAILED = "failed", "failed"
    TERMINATED = "terminated", "terminated"


class SupervisionStrategy(models.TextChoices):
    ONE_FOR_ONE = "OneForOne", "OneForOne"
    ONE_FOR_ALL = "OneForAll", "OneForAll"
    REST_FOR_ONE = "RestForOne", "RestForOne"
    ESCALATE = "Escalate", "Escalate"


class BackoffStrategy(models.TextChoices):
    FIXED = "Fixed", "Fixed"
    LINEAR = "Linear", "Linear"
    EXPONENTIAL = "Exponential", "Exponential"


class FailureReason(models.TextChoices):
    CRASH = "Crash", "Crash"
    HEARTBEAT_TIMEOUT = "HeartbeatTimeout", "HeartbeatTimeout"
    RESOURCE_EXHAUSTION = "ResourceExhaustion", "ResourceExhaustion"
    UNHANDLED_ERROR = "UnhandledError", "UnhandledError"
    EXTERNAL_FAILURE = "ExternalFailure", "ExternalFailure"


class ChildState(models.TextChoices):
    STARTING = "Starting", "Starting"
    RUNNING = "Running", "Running"
    FAILED = "Failed", "Failed"
    STOPPED = "Stopped", "Stopped"


# Node types that must (True) or must not (False) carry an agent; the runtime's checks.
TYPES_WITH_AGENT = {NodeType.WORKER, NodeType.AGENT_SUPERVISOR}


class SupervisionNode(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node_id = models.TextField("name", unique=True, help_text="The node's human name.")
    node_type = PgEnumField(enum_type="node_type", choices=NodeType.choices)
    node_type_detail = models.TextField(
        null=True, blank=True, help_text="Required for every type but RootSupervisor, which has none."
    )
    status = PgEnumField(enum_type="node_status", choices=NodeStatus.choices, default=NodeStatus.INACTIVE)
    parent = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        db_column="parent_node_id",
        null=True,
        blank=True,
        related_name="children",
    )
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.PROTECT,
        db_column="agent_id",
        null=True,
        blank=True,
        related_name="supervision_nodes",
    )
    configuration = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "supervision_nodes"
        ordering = ["node_id"]
        permissions = [("restart_node", "Can restart a supervision node")]

    def __str__(self) -> str:
        return self.node_id

    def clean(self) -> None:
        errors: dict[str, str] = {}
        is_root = self.node_type == NodeType.ROOT_SUPERVISOR
        if is_root and self.node_type_detail:
            errors["node_type_detail"] = "A RootSupervisor has no type detail; leave it empty."
        if self.node_type and not is_root and not self.node_type_detail:
            errors["node_type_detail"] = f"A {self.node_type} node needs a type detail."
        needs_agent = self.node_type in TYPES_WITH_AGENT
        if self.node_type and needs_agent and self.agent_id is None:
            errors["agent"] = f"A {self.node_type} node must be linked to an agent."
        if self.node_type and not needs_agent and self.agent_id is not None:
            errors["agent"] = f"A {self.node_type} node cannot be linked to an agent."
        if self.parent_id is not None and self._parent_chain_reaches_self():
            errors["parent"] = "This parent would make a cycle: the node is among its own ancestors."
        if errors:
            raise ValidationError(errors)

    def _parent_chain_reaches_self(self) -> bool:
        """True when following parents from the chosen parent comes back to this node (one query)."""
        if self.parent_id == self.id:
            return True
        if self._state.adding:
            return False  # a new node has no descendants, so it cannot close a cycle
        return self.id in ancestor_ids(self.parent_id)


def ancestor_ids(node_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids from ``node_id`` up to its root, in one recursive query (cycle-safe)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE chain(id, parent_node_id, seen) AS (
                SELECT id, parent_node_id, ARRAY[id] FROM supervision_nodes WHERE id = %s
                UNION ALL
                SELECT n.id, n.parent_node_id, c.seen || n.id
                FROM supervision_nodes n JOIN chain c ON n.id = c.parent_node_id
                WHERE NOT n.id = ANY(c.seen)
            )
            SELECT id FROM chain
            """,
            [node_id],
        )
        return [row[0] for row in cursor.fetchall()]


class SupervisionPolicy(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.OneToOneField(
        SupervisionNode, on_delete=models.DO_NOTHING, db_column="node_id", related_name="policy"
    )
    supervision_strategy = PgEnumField(
        enum_type="supervision_strategy", choices=SupervisionStrategy.choices, default=SupervisionStrategy.ONE_FOR_ONE
    )
    max_restarts = models.IntegerField(default=rules.DEFAULT_MAX_RESTARTS, validators=[MinValueValidator(0)])
    time_window_seconds = models.IntegerField(
        default=rules.DEFAULT_TIME_WINDOW_SECONDS, validators=[MinValueValidator(1)]
    )
    backoff_strategy = PgEnumField(
        enum_type="backoff_strategy", choices=BackoffStrategy.choices, default=BackoffStrategy.EXPONENTIAL
    )
    backoff_factor = models.DecimalField(
        max_digits=4,
        decimal_places=2,
        null=True,
        blank=True,
        default=Decimal("2.00"),
        validators=[MinValueValidator(0)],
    )
    min_restart_delay_ms = models.IntegerField(default=rules.DEFAULT_MIN_DELAY_MS, validators=[MinValueValidator(0)])
    max_restart_delay_ms = models.IntegerField(default=rules.DEFAULT_MAX_DELAY_MS, validators=[MinValueValidator(0)])
    escalate_on_limit = models.BooleanField(default=True)
    escalate_on_error_types = ArrayField(models.TextField(), default=list, blank=True)
    # At least 1 s in the console's forms (0 or a negative timeout escalates at once or never).
    # A validator, not a CHECK: CONTRACTS §1 gives the column only NOT NULL DEFAULT 10, and a
    # CHECK the runtime does not know of could make its own upserts fail; its writes are its own.
    escalation_timeout_seconds = models.IntegerField(
        default=10, validators=[MinValueValidator(1, "The escalation timeout must be at least 1 second.")]
    )
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "supervision_policies"
        verbose_name_plural = "supervision policies"

    def __str__(self) -> str:
        """Names its node first: in the admin's history, deletion pages and messages a policy is told
        apart by the node it governs, not by its settings (which many policies share)."""
        settings_text = (
            f"{self.supervision_strategy}, {self.max_restarts} in {self.time_window_seconds}s, {self.backoff_strategy}"
        )
        node = self.node if self.node_id is not None else None
        return f"Policy of {node.node_id}: {settings_text}" if node is not None else f"Policy: {settings_text}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if (
            self.min_restart_delay_ms is not None
            and self.max_restart_delay_ms is not None
            and self.max_restart_delay_ms < self.min_restart_delay_ms
        ):
            errors["max_restart_delay_ms"] = "The maximum delay must be at least the minimum delay."
        if self.backoff_strategy == BackoffStrategy.EXPONENTIAL and (
            self.backoff_factor is not None and self.backoff_factor <= 1
        ):
            errors["backoff_factor"] = "An Exponential policy needs a backoff factor above 1."
        unknown = sorted(set(self.escalate_on_error_types or []) - set(FailureReason.values))
        if unknown:
            errors["escalate_on_error_types"] = (
                f"Unknown failure reasons: {', '.join(unknown)}. Use {', '.join(FailureReason.values)}."
            )
        if errors:
            raise ValidationError(errors)

    def restart_delays(self, attempts: int = 8) -> list[int]:
        """The delay in ms of restart attempts 1..n under this policy (for the policy form)."""
        return [rules.restart_delay_ms(self, attempt) for attempt in range(1, attempts + 1)]


class SupervisionFailure(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(SupervisionNode, on_delete=models.DO_NOTHING, db_column="node_id", related_name="failures")
    failure_reason = PgEnumField(enum_type="failure_reason", choices=FailureReason.choices)
    failure_detail = models.TextField(validators=[MaxLengthValidator(FAILURE_DETAIL_MAX_LENGTH)])
    stack_trace = models.TextField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True, null=True)
    occurred_at = models.DateTimeField(db_default=Now())
    restart_attempted = models.BooleanField(default=False)
    escalated_to_parent = models.BooleanField(default=False)
    recovery_action = models.TextField(null=True, blank=True)
    correlation_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "supervision_failures"
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.failure_reason} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class SupervisionRestart(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(SupervisionNode, on_delete=models.DO_NOTHING, db_column="node_id", related_name="restarts")
    failure = models.ForeignKey(
        SupervisionFailure,
        on_delete=models.DO_NOTHING,
        db_column="failure_id",
        null=True,
        blank=True,
        related_name="restarts",
    )
    restart_attempt_number = models.IntegerField(validators=[MinValueValidator(1)])
    restart_delay_ms = models.IntegerField(validators=[MinValueValidator(0)])
    started_at = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)
    success = models.BooleanField(null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    new_instance_id = models.UUIDField(null=True, blank=True)
    # The console's own columns (nullable, so the runtime's inserts are unaffected).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    reason = models.TextField(blank=True, default="", db_default="", editable=False)
    command_sequence = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="Stream sequence of the RestartNode command on SYSTEM_EVENTS."
    )

    class Meta:
        db_table = "supervision_restarts"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"attempt {self.restart_attempt_number} of {self.node_id}"

    def clean(self) -> None:
        if (self.completed_at is None) != (self.success is None):
            field = "success" if self.success is None else "completed_at"
            raise ValidationError(
                {field: "A completed restart has both a completion time and an outcome; a pending one has neither."}
            )


class SupervisionChildState(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(
        SupervisionNode, on_delete=models.DO_NOTHING, db_column="node_id", related_name="child_states"
    )
    child_id = models.TextField()
    child_node = models.ForeignKey(
        SupervisionNode,
        on_delete=models.DO_NOTHING,  # the database sets it to NULL
        db_column="child_node_id",
        null=True,
        blank=True,
        related_name="+",
    )
    instance = models.ForeignKey(
        "agents.AgentInstance",
        on_delete=models.DO_NOTHING,  # the database sets it to NULL
        db_column="instance_id",
        null=True,
        blank=True,
        related_name="child_states",
    )
    state = PgEnumField(enum_type="child_state", choices=ChildState.choices)
    state_data = models.JSONField(default=dict, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    error_count = models.IntegerField(default=0)
    restart_count = models.IntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "supervision_child_states"
        constraints = [
            models.UniqueConstraint(fields=["node", "child_id"], name="supervision_child_states_node_id_child_id_key")
        ]

    def __str__(self) -> str:
        return f"{self.child_id} ({self.state})"


class SupervisionNodeHistory(models.Model):
    """One version of a node (console-owned): its state and policy over [valid_from, valid_to),
    valid_to None while it holds. Written only by the database's triggers on supervision_nodes and
    supervision_policies (migration 0006), whoever changes them; read by supervision/past.py."""

    id = models.BigAutoField(primary_key=True)
    node = models.UUIDField()
    name = models.TextField()
    node_type = PgEnumField(enum_type="node_type")
    node_type_detail = models.TextField(null=True)
    status = PgEnumField(enum_type="node_status")
    parent_node_id = models.UUIDField(null=True)
    agent_id = models.UUIDField(null=True)
    policy = models.JSONField(null=True)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True)
    change = models.TextField()  # what opened the version: known, created, status, parent, policy, node
    changed_by = models.TextField(null=True)  # the console user, for the console's own edits

    class Meta:
        db_table = "supervision_node_history"
        verbose_name_plural = "supervision node history"

    def __str__(self) -> str:
        return f"{self.name} from {self.valid_from:%Y-%m-%d %H:%M:%S}"
