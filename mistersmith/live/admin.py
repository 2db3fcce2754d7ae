"""Admin for the bridge's state (consumer positions, the dead-letter list: read-only), and the
mixins every console admin shares for rows the runtime writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.db.models.fields import NOT_PROVIDED
from django.http import HttpRequest

from mistersmith.live.models import BridgePosition, DeadLetter
from mistersmith.web import user_admin
from mistersmith.web.links import agent_column, agent_id_in_subject


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the bridge writes: operators may look (and delete), not add or edit."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class RuntimeOwnedMixin:
    """Fields the runtime writes are shown, not edited, once a row exists (a new row is all yours).

    A field that is not in the form is not written back either: saving the form cannot undo
    what the runtime wrote while the page was open.
    """

    runtime_owned_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly += [name for name in self.runtime_owned_fields if name not in readonly]
        return readonly


def database_filled_fields(model: type) -> set[str]:
    """Fields the database fills on insert (``db_default`` and not editable: created_at...)."""
    return {
        field.name
        for field in model._meta.concrete_fields
        if not field.editable and field.db_default is not NOT_PROVIDED
    }


class DatabaseFilledOnAddMixin:
    """The add page leaves out the read-only fields the database fills on insert.

    An unsaved row holds a ``DatabaseDefault`` there, which the admin printed as
    ``<DatabaseDefault object at 0x...>``; there is no value to show before the row exists.
    """

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is None:
            unset = database_filled_fields(self.model)
            readonly = [name for name in readonly if name not in unset]
        return readonly

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None:
            return fieldsets
        unset = database_filled_fields(self.model)
        kept = []
        for title, options in fieldsets:
            fields = [_without(line, unset) for line in options.get("fields", ())]
            fields = [line for line in fields if line]
            if fields:
                kept.append((title, {**options, "fields": fields}))
        return kept


def _without(line: str | Sequence[str], names: set[str]) -> str | tuple[str, ...] | None:
    """A fieldset line (a name, or names shown side by side) without ``names``; None when empty."""
    if isinstance(line, str):
        return None if line in names else line
    remaining = tuple(name for name in line if name not in names)
    return remaining or None


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "stream", "subject", "sequence", "reason", "error", "payload_excerpt"]
    list_filter = ["reason", "stream", ("received_at", admin.DateFieldListFilter)]
    search_fields = ["subject", "error"]
    date_hierarchy = "received_at"

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """After the subject, the agent it names (agent.<uuid>.…) as links to the agent."""
        columns = list(super().get_list_display(request))
        agent = agent_column(request.user, lambda letter: agent_id_in_subject(letter.subject), "agent")
        columns.insert(columns.index("subject") + 1, agent)
        return columns


@admin.register(BridgePosition)
class BridgePositionAdmin(ReadOnlyAdmin):
    list_display = ["consumer", "stream", "sequence", "updated_at"]


# Accounts and groups: only superusers grant superuser, staff, groups or permissions (issue 12 item 8).
user_admin.register(admin.site)
