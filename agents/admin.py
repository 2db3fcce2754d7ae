"""Admin for agents, their instances and interactive sessions.

The runtime owns an agent's status and heartbeats, an instance's status and heartbeat and a
session's messages: the admin shows them and never writes them back (saving an agent's
configuration writes only the fields of its form).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.db.models.functions import Now
from django.http import HttpRequest

from agents.models import (
    Agent,
    AgentAnomaly,
    AgentCommandRecord,
    AgentInstance,
    Discovery,
    InteractiveSession,
    SessionMessage,
)
from mistersmith.live.admin import DatabaseFilledOnAddMixin, ReadOnlyAdmin, RuntimeOwnedMixin
from mistersmith.web.admin_scale import IndexedValuesFilter, LightChangelistMixin
from mistersmith.web.forms import IndexedTextLimitMixin
from mistersmith.web.links import AgentLinksMixin


class AgentForm(forms.ModelForm):
    """An agent's name and configuration; its status is the runtime's, shown and never edited
    (a new agent starts Created, the lifecycle's first state)."""

    class Meta:
        model = Agent
        fields = [
            "name",
            "agent_type",
            "status",
            "supervision_node",
            "model",
            "max_turns",
            "allowed_tools",
            "enable_mcp",
            "timeout_seconds",
            "memory_limit_mb",
        ]


class InstanceInline(admin.TabularInline):
    """The agent's instances as the runtime reports them; host and port may be corrected here,
    a new instance is added on its own page."""

    model = AgentInstance
    extra = 0
    fields = ["status", "host_name", "port", "last_heartbeat", "started_at"]
    readonly_fields = ["status", "last_heartbeat", "started_at"]
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SessionInline(admin.TabularInline):
    model = InteractiveSession
    extra = 0
    fields = ["state", "pid", "model", "started_at", "ended_at"]
    readonly_fields = ["started_at"]
    show_change_link = True


@admin.register(Agent)
class AgentAdmin(LightChangelistMixin, DatabaseFilledOnAddMixin, IndexedTextLimitMixin, admin.ModelAdmin):
    form = AgentForm
    indexed_text_fields = ("name",)  # under the list's sort indexes: a huge name would fail them
    list_display = ["name", "agent_type", "status", "model", "supervision_node", "last_heartbeat", "state_changed_at"]
    # agent_type and model are free text: their values through their indexes (migration 0008), no DISTINCT scan
    list_filter = ["status", ("agent_type", IndexedValuesFilter), ("model", IndexedValuesFilter), "enable_mcp"]
    list_select_related = ["supervision_node"]
    search_fields = ["name", "=id", "agent_type"]
    autocomplete_fields = ["supervision_node"]
    # The status too, on the add page as well: the lifecycle moves it, from Created.
    readonly_fields = ["id", "status", "created_at", "updated_at", "state_changed_at", "last_heartbeat"]
    fieldsets = [
        (None, {"fields": ["name", "agent_type", "status", "supervision_node"]}),
        (
            "Configuration",
            {"fields": ["model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"]},
        ),
        ("Record", {"fields": ["id", "created_at", "updated_at", "state_changed_at", "last_heartbeat"]}),
    ]
    inlines = [InstanceInline, SessionInline]

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        """A change writes the form's own fields only: whatever the runtime wrote meanwhile
        (status, state_changed_at, last_heartbeat) stays as it wrote it."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        concrete = {field.name for field in Agent._meta.concrete_fields}
        obj.updated_at = Now()
        obj.save(update_fields=[name for name in form.fields if name in concrete] + ["updated_at"])
        obj.refresh_from_db(fields=["updated_at"])


@admin.register(AgentInstance)
class AgentInstanceAdmin(LightChangelistMixin, DatabaseFilledOnAddMixin, RuntimeOwnedMixin, admin.ModelAdmin):
    runtime_owned_fields = ("status", "last_heartbeat")
    list_display = ["id", "agent", "status", "host_name", "port", "last_heartbeat", "started_at"]
    list_filter = ["status", ("last_heartbeat", admin.DateFieldListFilter)]
    list_select_related = ["agent"]
    search_fields = ["=id", "host_name", "agent__name"]
    autocomplete_fields = ["agent"]
    readonly_fields = ["started_at"]


class MessageInline(admin.TabularInline):
    """The session's output as the runtime recorded it: read, never rewritten here."""

    model = SessionMessage
    extra = 0
    fields = ["position", "role", "content", "timestamp"]
    readonly_fields = fields
    ordering = ["position"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(InteractiveSession)
class InteractiveSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "state", "pid", "model", "started_at", "ended_at", "message_count"]
    list_filter = ["state", "model", ("started_at", admin.DateFieldListFilter)]
    list_select_related = ["agent"]
    search_fields = ["=id", "agent__name", "=pid"]
    autocomplete_fields = ["agent"]
    date_hierarchy = "started_at"
    readonly_fields = ["started_at"]
    inlines = [MessageInline]

    def get_queryset(self, request: Any):
        return super().get_queryset(request).annotate(message_total=Count("messages"))

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, session: InteractiveSession) -> int:
        return session.message_total


@admin.register(SessionMessage)
class SessionMessageAdmin(RuntimeOwnedMixin, admin.ModelAdmin):
    runtime_owned_fields = ("session", "position", "role", "content", "timestamp")
    list_display = ["session", "position", "role", "short_content", "timestamp"]
    list_filter = ["role", ("timestamp", admin.DateFieldListFilter)]
    list_select_related = ["session"]
    search_fields = ["content", "=session__id"]
    raw_id_fields = ["session"]
    ordering = ["session", "position"]

    @admin.display(description="content")
    def short_content(self, message: SessionMessage) -> str:
        return message.content if len(message.content) <= 80 else f"{message.content[:79]}…"


@admin.register(AgentAnomaly)
class AgentAnomalyAdmin(AgentLinksMixin, ReadOnlyAdmin):
    """Events the projection refused: shown to operators, written only by the bridge."""

    list_display = ["recorded_at", "agent_id", "event_kind", "current_state", "attempted_state", "detail"]
    list_filter = ["event_kind", ("recorded_at", admin.DateFieldListFilter)]
    search_fields = ["=agent_id"]
    date_hierarchy = "recorded_at"


@admin.register(Discovery)
class DiscoveryAdmin(AgentLinksMixin, ReadOnlyAdmin):
    """The store's content (the newest 1,000); written by the bridge from the DISCOVERIES stream."""

    list_display = ["timestamp", "agent_role", "agent_id", "discovery_type", "confidence", "content"]
    list_filter = ["discovery_type", "agent_role"]
    search_fields = ["content", "=agent_id"]
    date_hierarchy = "timestamp"


@admin.register(AgentCommandRecord)
class AgentCommandRecordAdmin(AgentLinksMixin, ReadOnlyAdmin):
    """Who sent which command to which agent and what came of it: written only by agents.commands."""

    list_display = ["requested_at", "agent_name", "agent_id", "command", "requested_by_name", "outcome", "detail"]
    list_filter = ["outcome", "command", ("requested_at", admin.DateFieldListFilter)]
    search_fields = ["=agent_id", "agent_name", "requested_by_name"]
    date_hierarchy = "requested_at"
    fields = [
        "requested_at",
        "agent_id",
        "agent_name",
        "command",
        "arguments",
        "message_id",
        "requested_by",
        "requested_by_name",
        "outcome",
        "detail",
        "response_excerpt",
        "duration_ms",
    ]
    readonly_fields = fields
