"""Admin for the Hive Mind files: every table browsable and editable, on its own SQLite alias.

The router sends every hive query and transaction to the right file (``hive`` or
``hive_memory``): Django's admin asks it for each read, write and ``atomic`` block, so the
"one admin per database" pattern of explicit ``using=`` calls is not needed here.
The admin only shows the columns the file has (an older claude-flow version lacks some),
and leaves read-only what claude-flow maintains itself: creation and access times, counters.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from hive.introspection import absent_names
from hive.models import (
    CollectiveMemory,
    ConsensusDecision,
    HiveAgent,
    HiveSession,
    MemoryEntry,
    SessionCheckpoint,
    SessionLog,
    Swarm,
    Task,
)
from mistersmith.web.forms import STORABLE_JSON


def _field_name(option: Any) -> str | None:
    """The model field an admin option entry refers to (``"^swarm__name"`` -> ``"swarm"``)."""
    if isinstance(option, list | tuple):
        option = option[0]
    if not isinstance(option, str):
        return None
    return option.lstrip("^=@-").split("__", 1)[0]


class HiveAdminMixin:
    """Drop the fields whose column the file lacks from forms, lists, filters and searches."""

    model: type[models.Model]

    def _present(self, options: Any) -> list[Any]:
        absent = absent_names(self.model)
        return [option for option in options if _field_name(option) not in absent]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self._present(super().get_fields(request, obj))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        readonly = list(super().get_readonly_fields(request, obj))
        pk = self.model._meta.pk
        if obj is not None and pk.editable and pk.name not in readonly:
            readonly.append(pk.name)  # a changed text id would save a copy, not rename
        return self._present(readonly)


class HiveModelAdmin(HiveAdminMixin, admin.ModelAdmin):
    """Base admin of the hive tables: JSON columns as text areas, absent columns hidden."""

    formfield_overrides = {
        models.JSONField: {**STORABLE_JSON[models.JSONField], "widget": forms.Textarea(attrs={"rows": 3, "cols": 60})}
    }
    list_per_page = 50

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return self._present(super().get_list_display(request))

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return self._present(super().get_list_filter(request))

    def get_search_fields(self, request: HttpRequest) -> list[Any]:
        return self._present(super().get_search_fields(request))


# --- Swarms, with their queens and workers inline ------------------------------------------------


class RoleFormSet(BaseInlineFormSet):
    """Agents added in this inline get its role (the role column itself is not shown)."""

    role = HiveAgent.WORKER

    def _construct_form(self, i: int, **kwargs: Any) -> forms.Form:
        form = super()._construct_form(i, **kwargs)
        if form.instance._state.adding:
            form.instance.role = self.role
        return form


class QueenFormSet(RoleFormSet):
    role = HiveAgent.QUEEN


class WorkerFormSet(RoleFormSet):
    role = HiveAgent.WORKER


class AgentInline(HiveAdminMixin, admin.TabularInline):
    """A swarm's agents of one role; the text id is generated, the role set by the formset."""

    model = HiveAgent
    fields = ("name", "type", "status", "capabilities", "created_at")
    readonly_fields = ("created_at",)
    formfield_overrides = {
        models.JSONField: {**STORABLE_JSON[models.JSONField], "widget": forms.TextInput(attrs={"size": 40})}
    }
    extra = 0
    show_change_link = True


class QueenInline(AgentInline):
    formset = QueenFormSet
    verbose_name = "queen"
    verbose_name_plural = "queens"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).queens()


class WorkerInline(AgentInline):
    formset = WorkerFormSet
    verbose_name = "worker"
    verbose_name_plural = "workers"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).workers()


@admin.register(Swarm)
class SwarmAdmin(HiveModelAdmin):
    list_display = ("name", "status", "queen_type", "queen_count", "worker_count", "created_at", "updated_at")
    list_filter = ("status", "queen_type")
    search_fields = ("name", "objective", "=id")
    fields = ("id", "name", "objective", "status", "queen_type", "created_at", "updated_at")
    readonly_fields = ("created_at", "updated_at")
    inlines = (QueenInline, WorkerInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queen = Q(agents__role=HiveAgent.QUEEN)
        return (
            super()
            .get_queryset(request)
            .annotate(
                queens=Count("agents", filter=queen),
                workers=Count("agents", filter=~queen),  # NOT on a nullable column keeps NULL roles
            )
        )

    @admin.display(description="queens", ordering="queens")
    def queen_count(self, obj: Swarm) -> int:
        return obj.queens

    @admin.display(description="workers", ordering="workers")
    def worker_count(self, obj: Swarm) -> int:
        return obj.workers


@admin.register(HiveAgent)
class HiveAgentAdmin(HiveModelAdmin):
    list_display = ("name", "role", "type", "status", "swarm", "capability_list", "created_at")
    list_filter = ("role", "type", "status")
    list_select_related = ("swarm",)
    search_fields = ("name", "type", "=id", "swarm__name")
    fields = ("id", "swarm", "name", "type", "role", "status", "capabilities", "created_at")
    readonly_fields = ("created_at",)

    @admin.display(description="capabilities")
    def capability_list(self, obj: HiveAgent) -> str:
        value = obj.capabilities
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value or "")


@admin.register(Task)
class TaskAdmin(HiveModelAdmin):
    list_display = ("__str__", "status", "priority", "agent", "swarm", "created_at", "completed_at")
    list_filter = ("status", "priority")
    list_select_related = ("swarm", "agent")
    search_fields = ("description", "result", "=id")
    fields = ("id", "swarm", "agent", "description", "status", "priority", "result", "created_at", "completed_at")
    readonly_fields = ("created_at", "completed_at")


@admin.register(CollectiveMemory)
class CollectiveMemoryAdmin(HiveModelAdmin):
    list_display = ("key", "type", "confidence", "swarm", "created_by", "access_count", "size", "created_at")
    list_filter = ("type", "compressed")
    list_select_related = ("swarm",)
    search_fields = ("key", "value", "created_by")
    fields = (
        "id",
        "swarm",
        "key",
        "value",
        "type",
        "confidence",
        "created_by",
        "created_at",
        "accessed_at",
        "access_count",
        "compressed",
        "size",
    )
    readonly_fields = ("created_at", "accessed_at", "access_count", "compressed", "size")


@admin.register(ConsensusDecision)
class ConsensusDecisionAdmin(HiveModelAdmin):
    list_display = ("topic", "decision", "algorithm", "confidence", "swarm", "created_at")
    list_filter = ("algorithm",)
    list_select_related = ("swarm",)
    search_fields = ("topic", "decision")
    fields = ("id", "swarm", "topic", "decision", "votes", "algorithm", "confidence", "created_at")
    readonly_fields = ("created_at",)


@admin.register(HiveSession)
class HiveSessionAdmin(HiveModelAdmin):
    list_display = ("swarm_name", "status", "completion_percentage", "swarm", "updated_at", "parent_pid")
    list_filter = ("status",)
    list_select_related = ("swarm",)
    search_fields = ("swarm_name", "objective", "=id")
    fields = (
        "id",
        "swarm",
        "swarm_name",
        "objective",
        "status",
        "completion_percentage",
        "checkpoint_data",
        "metadata",
        "parent_pid",
        "child_pids",
        "created_at",
        "updated_at",
        "paused_at",
        "resumed_at",
    )
    readonly_fields = ("created_at", "updated_at", "paused_at", "resumed_at")


@admin.register(SessionCheckpoint)
class SessionCheckpointAdmin(HiveModelAdmin):
    list_display = ("checkpoint_name", "session", "created_at")
    list_select_related = ("session",)
    search_fields = ("checkpoint_name", "=session__id")
    fields = ("id", "session", "checkpoint_name", "checkpoint_data", "created_at")
    readonly_fields = ("created_at",)


@admin.register(SessionLog)
class SessionLogAdmin(HiveModelAdmin):
    list_display = ("timestamp", "log_level", "message", "agent_id", "session")
    list_filter = ("log_level",)
    list_select_related = ("session",)
    search_fields = ("message", "agent_id")
    fields = ("session", "log_level", "message", "agent_id", "data", "timestamp")
    readonly_fields = ("timestamp",)


@admin.register(MemoryEntry)
class MemoryEntryAdmin(HiveModelAdmin):
    list_display = ("key", "namespace", "value_preview", "access_count", "created", "updated", "expires", "expired")
    list_filter = ("namespace",)
    search_fields = ("key", "value")
    fields = (
        "key",
        "namespace",
        "value",
        "metadata",
        "ttl",
        "created",
        "updated",
        "accessed",
        "access_count",
        "expires",
    )
    readonly_fields = ("created", "updated", "accessed", "access_count", "expires")

    @admin.display(description="value")
    def value_preview(self, obj: MemoryEntry) -> str:
        value = obj.value or ""
        return value if len(value) <= 80 else value[:79] + "…"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: MemoryEntry) -> Any:
        return obj.created

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: MemoryEntry) -> Any:
        return obj.updated

    @admin.display(description="accessed", ordering="accessed_at")
    def accessed(self, obj: MemoryEntry) -> Any:
        return obj.accessed

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj: MemoryEntry) -> Any:
        return obj.expires

    @admin.display(description="expired", boolean=True)
    def expired(self, obj: MemoryEntry) -> bool:
        return obj.is_expired
