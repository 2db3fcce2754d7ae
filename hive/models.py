"""The Hive Mind tables as unmanaged models over claude-flow's own SQLite files.

claude-flow owns the files and their schema (``managed = False``, exact table names; the
router sends these models to the ``hive`` / ``hive_memory`` aliases). Its ids are text
(``swarm-<ms>-<random>``), so are the primary keys here; its ``hive.db`` timestamps are
``CURRENT_TIMESTAMP`` text (:class:`hive.fields.TextTimestampField`), its ``memory.db`` ones
unix seconds (integers, with readable properties). Queens and workers are agents rows told
apart by ``role``; there is no table of either.

Columns vary between tool versions, so :class:`HiveModel` reads and writes only the
columns the file has (see :mod:`hive.managers` and :mod:`hive.introspection`).
"""

from __future__ import annotations

import datetime
import secrets
import string
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, router, transaction
from django.utils import timezone

from hive.fields import TextTimestampField, from_unix, unix_now
from hive.introspection import absent_attnames, defer_foreign_keys
from hive.managers import HiveAgentManager, HiveManager

_BASE36 = string.digits + string.ascii_lowercase


def claude_flow_id(prefix: str) -> str:
    """An id shaped like claude-flow's: ``<prefix>-<epoch ms>-<9 base36 characters>``."""
    suffix = "".join(secrets.choice(_BASE36) for _ in range(9))
    return f"{prefix}-{int(time.time() * 1000)}-{suffix}"


def new_swarm_id() -> str:
    return claude_flow_id("swarm")


def new_agent_id() -> str:
    return claude_flow_id("agent")


def new_task_id() -> str:
    return claude_flow_id("task")


def new_memory_id() -> str:
    return claude_flow_id("memory")


def new_decision_id() -> str:
    return claude_flow_id("consensus")


def new_session_id() -> str:
    return claude_flow_id("session")


def new_checkpoint_id() -> str:
    return claude_flow_id("checkpoint")


def validate_capabilities(value: Any) -> None:
    """claude-flow stores capabilities as a JSON array of strings (``["coding", "testing"]``)."""
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('Capabilities must be a JSON list of strings, e.g. ["research", "analysis"].')


unit_interval = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class HiveModel(models.Model):
    """Base of the hive models: unmanaged, and reading/writing only the columns the file has.

    Three hooks complete :class:`hive.managers.HiveQuerySet`: a deferred field whose column
    the file lacks reads as None instead of querying it; INSERT and UPDATE leave such columns
    out; a delete checks claude-flow's (non-deferrable) foreign keys at commit, so cascades
    may delete in any order. ``_do_insert``/``_do_update`` are Django's (5.2) save internals.
    """

    objects = HiveManager()

    class Meta:
        abstract = True
        managed = False
        base_manager_name = "objects"

    def _db_for(self, using: str | None) -> str:
        return using or self._state.db or router.db_for_write(type(self), instance=self)

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        if fields is not None:
            absent = absent_attnames(type(self), self._db_for(using))
            wanted = set(fields)
            for attname in wanted & absent:
                self.__dict__[attname] = None
            fields = wanted - absent
            if not fields:
                return
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)

    def _do_insert(self, manager: Any, using: str, fields: Any, returning_fields: Any, raw: bool) -> Any:
        absent = absent_attnames(type(self), using)
        fields = [field for field in fields if field.attname not in absent]
        return super()._do_insert(manager, using, fields, returning_fields, raw)

    def _do_update(
        self, base_qs: Any, using: str, pk_val: Any, values: Any, update_fields: Any, forced_update: bool
    ) -> bool:
        absent = absent_attnames(type(self), using)
        values = [value for value in values if value[0].attname not in absent]
        return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        using = self._db_for(using)
        with transaction.atomic(using=using, savepoint=False):
            defer_foreign_keys(using)
            return super().delete(using=using, keep_parents=keep_parents)


class Swarm(HiveModel):
    """One hive-mind swarm: an objective, a queen type, and its agents, tasks and memory."""

    id = models.CharField(primary_key=True, max_length=255, default=new_swarm_id)
    name = models.CharField(max_length=255)
    objective = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=64, default="active", null=True, blank=True)
    queen_type = models.CharField(
        max_length=64, default="strategic", null=True, blank=True, help_text="strategic, tactical or adaptive."
    )
    created_at = TextTimestampField(auto_now_add=True, null=True)
    updated_at = TextTimestampField(auto_now=True, null=True)

    class Meta(HiveModel.Meta):
        db_table = "swarms"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.name or self.id


class HiveAgent(HiveModel):
    """An ``agents`` row: the swarm's queen (``role='queen'``) or one of its workers."""

    QUEEN = "queen"
    WORKER = "worker"
    ROLE_CHOICES = ((QUEEN, "Queen"), (WORKER, "Worker"))

    id = models.CharField(primary_key=True, max_length=255, default=new_agent_id)
    swarm = models.ForeignKey(Swarm, models.CASCADE, null=True, related_name="agents", db_constraint=False)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=64, help_text="researcher, coder, analyst, tester, coordinator…")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=WORKER, null=True)
    status = models.CharField(max_length=64, default="idle", null=True, blank=True)
    capabilities = models.JSONField(default=list, null=True, blank=True, validators=[validate_capabilities])
    created_at = TextTimestampField(auto_now_add=True, null=True)

    objects = HiveAgentManager()

    class Meta(HiveModel.Meta):
        db_table = "agents"
        ordering = ("role", "name")
        verbose_name = "agent"

    def __str__(self) -> str:
        return f"{self.name} ({self.role or self.WORKER})"

    @property
    def is_queen(self) -> bool:
        return self.role == self.QUEEN


class Task(HiveModel):
    """A unit of the swarm's work, possibly assigned to an agent."""

    id = models.CharField(primary_key=True, max_length=255, default=new_task_id)
    swarm = models.ForeignKey(Swarm, models.CASCADE, null=True, related_name="tasks", db_constraint=False)
    agent = models.ForeignKey(
        HiveAgent, models.SET_NULL, null=True, blank=True, related_name="tasks", db_constraint=False
    )
    description = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=64, default="pending", null=True, blank=True)
    priority = models.IntegerField(default=5, null=True, blank=True)
    result = models.TextField(null=True, blank=True)
    created_at = TextTimestampField(auto_now_add=True, null=True)
    completed_at = TextTimestampField(null=True, blank=True)

    class Meta(HiveModel.Meta):
        db_table = "tasks"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        text = (self.description or "").strip()
        return text[:60] + ("…" if len(text) > 60 else "") if text else self.id

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A task marked completed gets its completion time, as claude-flow records it."""
        if self.status == "completed" and self.completed_at is None:
            self.completed_at = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "completed_at"}
        super().save(*args, **kwargs)


class CollectiveMemory(HiveModel):
    """Knowledge the swarm's agents share (``collective_memory``), with a confidence in [0, 1]."""

    id = models.CharField(primary_key=True, max_length=255, default=new_memory_id)
    swarm = models.ForeignKey(
        Swarm, models.CASCADE, null=True, blank=True, related_name="collective_memory", db_constraint=False
    )
    key = models.CharField(max_length=1024)
    value = models.TextField(null=True, blank=True)
    type = models.CharField(max_length=64, default="knowledge", null=True, blank=True)
    confidence = models.FloatField(default=1.0, null=True, blank=True, validators=unit_interval)
    created_by = models.CharField(max_length=255, null=True, blank=True)
    created_at = TextTimestampField(auto_now_add=True, null=True)
    # Newer claude-flow files only:
    accessed_at = TextTimestampField(null=True, blank=True)
    access_count = models.IntegerField(default=0, null=True, blank=True)
    compressed = models.BooleanField(default=False, null=True)
    size = models.IntegerField(default=0, null=True, blank=True, help_text="Bytes.")

    class Meta(HiveModel.Meta):
        db_table = "collective_memory"
        ordering = ("key",)
        verbose_name = "collective memory"
        verbose_name_plural = "collective memory"

    def __str__(self) -> str:
        return self.key

    def save(self, *args: Any, **kwargs: Any) -> None:
        """``size`` is the value's length in bytes, as claude-flow computes it."""
        self.size = len((self.value or "").encode())
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "size"}
        super().save(*args, **kwargs)


class ConsensusDecision(HiveModel):
    """A decision the swarm voted on, with the votes and the algorithm that counted them."""

    id = models.CharField(primary_key=True, max_length=255, default=new_decision_id)
    swarm = models.ForeignKey(
        Swarm, models.CASCADE, null=True, blank=True, related_name="decisions", db_constraint=False
    )
    topic = models.TextField()
    decision = models.TextField(null=True, blank=True)
    votes = models.JSONField(default=dict, null=True, blank=True)
    algorithm = models.CharField(
        max_length=64, default="majority", null=True, blank=True, help_text="majority, weighted or byzantine."
    )
    confidence = models.FloatField(null=True, blank=True, validators=unit_interval)
    created_at = TextTimestampField(auto_now_add=True, null=True)

    class Meta(HiveModel.Meta):
        db_table = "consensus_decisions"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.topic


class HiveSession(HiveModel):
    """A hive-mind session (newer files): what ``hive-mind resume`` restarts a swarm from."""

    id = models.CharField(primary_key=True, max_length=255, default=new_session_id)
    swarm = models.ForeignKey(Swarm, models.CASCADE, null=True, related_name="sessions", db_constraint=False)
    swarm_name = models.CharField(max_length=255)
    objective = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=64, default="active", null=True, blank=True)
    created_at = TextTimestampField(auto_now_add=True, null=True)
    updated_at = TextTimestampField(auto_now=True, null=True)
    paused_at = TextTimestampField(null=True, blank=True)
    resumed_at = TextTimestampField(null=True, blank=True)
    completion_percentage = models.FloatField(
        default=0, null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(100.0)]
    )
    checkpoint_data = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    parent_pid = models.IntegerField(null=True, blank=True)
    child_pids = models.JSONField(null=True, blank=True)

    class Meta(HiveModel.Meta):
        db_table = "sessions"
        ordering = ("-updated_at",)
        verbose_name = "session"

    def __str__(self) -> str:
        return f"{self.swarm_name} ({self.status})"


class SessionCheckpoint(HiveModel):
    """A named snapshot of a session's state."""

    id = models.CharField(primary_key=True, max_length=255, default=new_checkpoint_id)
    session = models.ForeignKey(HiveSession, models.CASCADE, related_name="checkpoints", db_constraint=False)
    checkpoint_name = models.CharField(max_length=255)
    checkpoint_data = models.JSONField(null=True, blank=True)
    created_at = TextTimestampField(auto_now_add=True, null=True)

    class Meta(HiveModel.Meta):
        db_table = "session_checkpoints"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.checkpoint_name


class SessionLog(HiveModel):
    """One line of a session's event log."""

    id = models.AutoField(primary_key=True)
    session = models.ForeignKey(HiveSession, models.CASCADE, related_name="logs", db_constraint=False)
    timestamp = TextTimestampField(auto_now_add=True, null=True)
    log_level = models.CharField(max_length=16, default="info", null=True, blank=True)
    message = models.TextField(null=True, blank=True)
    agent_id = models.CharField(max_length=255, null=True, blank=True)
    data = models.JSONField(null=True, blank=True)

    class Meta(HiveModel.Meta):
        db_table = "session_logs"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"[{self.log_level}] {self.message or ''}"[:80]


class MemoryEntry(HiveModel):
    """A key/value entry of claude-flow's memory store (``memory.db``), unique per namespace.

    Timestamps are unix seconds, as the tool writes them; ``created``, ``updated``,
    ``accessed`` and ``expires`` give them as datetimes. Saving stamps ``updated_at`` and,
    when a ``ttl`` (seconds) is set, moves ``expires_at`` to now + ttl, as the tool does.
    """

    id = models.AutoField(primary_key=True)
    key = models.CharField(max_length=1024)
    value = models.TextField()
    namespace = models.CharField(max_length=255, default="default")
    metadata = models.JSONField(null=True, blank=True)
    created_at = models.IntegerField(default=unix_now, null=True, editable=False)
    updated_at = models.IntegerField(default=unix_now, null=True, editable=False)
    accessed_at = models.IntegerField(default=unix_now, null=True, editable=False)
    access_count = models.IntegerField(default=0, null=True, blank=True)
    ttl = models.IntegerField(null=True, blank=True, validators=[MinValueValidator(0)], help_text="Seconds to live.")
    expires_at = models.IntegerField(null=True, blank=True, editable=False)

    class Meta(HiveModel.Meta):
        db_table = "memory_entries"
        ordering = ("namespace", "key")
        verbose_name = "memory entry"
        verbose_name_plural = "memory entries"
        constraints = (models.UniqueConstraint(fields=("key", "namespace"), name="memory_entries_key_namespace"),)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        now = unix_now()
        self.updated_at = now
        if self.ttl is not None:
            self.expires_at = now + self.ttl
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at", "expires_at"}
        super().save(*args, **kwargs)

    @property
    def created(self) -> datetime.datetime | None:
        return from_unix(self.created_at)

    @property
    def updated(self) -> datetime.datetime | None:
        return from_unix(self.updated_at)

    @property
    def accessed(self) -> datetime.datetime | None:
        return from_unix(self.accessed_at)

    @property
    def expires(self) -> datetime.datetime | None:
        return from_unix(self.expires_at)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= unix_now()
