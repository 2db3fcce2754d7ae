"""Admin for agents, their instances and interactive sessions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count

from agents.lifecycle import IllegalTransition, check_transition
from agents.models import (
    Agent,
    AgentAnomaly,
    AgentCommandRecord,
    AgentInstance,
    Discovery,
    InteractiveSession,
    SessionMessage,
)
from mistersmith.admin import ReadOnlyAdmin
from mistersmith.forms import IndexedTextLimitMixin


class AgentForm(forms.ModelForm):
    """A status change in the admin obeys the lifecycle like any other move."""

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

    def clean_status(self) -> str:
        target = self.cleaned_data["status"]
        if self.instance.pk and "status" in self.changed_data:
            current = Agent.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
            if current is not None:
                try:
                    check_transition(current, target)
                except IllegalTransition as error:
                    raise forms.ValidationError(str(error)) from error
        return target


class InstanceInline(admin.TabularInline):
    model = AgentInstance
    extra = 0
    fields = ["status", "host_name", "port", "last_heartbeat", "started_at"]
    readonly_fields = ["started_at"]
    show_change_link = True


class SessionInline(admin.TabularInline):
    model = InteractiveSession
    extra = 0
    fields = ["state", "pid", "model", "started_at", "ended_at"]
    readonly_fields = ["started_at"]
    show_change_link = True


@admin.register(Agent)
class AgentAdmin(IndexedTextLimitMixin, admin.ModelAdmin):
    form = AgentForm
    indexed_text_fields = ("name",)  # under the list's sort indexes: a huge name would fail them
    list_display = ["name", "agent_type", "status", "model", "supervision_node", "last_heartbeat", "state_changed_at"]
    list_filter = ["status", "agent_type", "model", "enable_mcp"]
    list_select_related = ["supervision_node"]
    search_fields = ["name", "=id", "agent_type"]
    autocomplete_fields = ["supervision_node"]
    readonly_fields = ["id", "created_at", "updated_at", "state_changed_at", "last_heartbeat"]
    fieldsets = [
        (None, {"fields": ["name", "agent_type", "status", "supervision_node"]}),
        (
            "Configuration",
            {"fields": ["model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb"]},
        ),
        ("Record", {"fields": ["id", "created_at", "updated_at", "state_changed_at", "last_heartbeat"]}),
    ]
    inlines = [InstanceInline, SessionInline]


@admin.register(AgentInstance)
class AgentInstanceAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "status", "host_name", "port", "last_heartbeat", "started_at"]
    list_filter = ["status", ("last_heartbeat", admin.DateFieldListFilter)]
    list_select_related = ["agent"]
    search_fields = ["=id", "host_name", "agent__name"]
    autocomplete_fields = ["agent"]
    readonly_fields = ["started_at"]


class MessageInline(admin.TabularInline):
    model = SessionMessage
    extra = 0
    fields = ["position", "role", "content", "timestamp"]
    ordering = ["position"]


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
class SessionMessageAdmin(admin.ModelAdmin):
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
class AgentAnomalyAdmin(ReadOnlyAdmin):
    """Events the projection refused: shown to operators, written only by the bridge."""

    list_display = ["recorded_at", "agent_id", "event_kind", "current_state", "attempted_state", "detail"]
    list_filter = ["event_kind", ("recorded_at", admin.DateFieldListFilter)]
    search_fields = ["=agent_id"]
    date_hierarchy = "recorded_at"


@admin.register(Discovery)
class DiscoveryAdmin(ReadOnlyAdmin):
    """The store's content (the newest 1,000); written by the bridge from the DISCOVERIES stream."""

    list_display = ["timestamp", "agent_role", "agent_id", "discovery_type", "confidence", "content"]
    list_filter = ["discovery_type", "agent_role"]
    search_fields = ["content", "=agent_id"]
    date_hierarchy = "timestamp"


@admin.register(AgentCommandRecord)
class AgentCommandRecordAdmin(ReadOnlyAdmin):
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
