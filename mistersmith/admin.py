"""Admin for the bridge's state: consumer positions and the dead-letter list (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from mistersmith.models import BridgePosition, DeadLetter


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the bridge writes: operators may look (and delete), not add or edit."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "stream", "subject", "sequence", "reason", "error", "payload_excerpt"]
    list_filter = ["reason", "stream", ("received_at", admin.DateFieldListFilter)]
    search_fields = ["subject", "error"]
    date_hierarchy = "received_at"


@admin.register(BridgePosition)
class BridgePositionAdmin(ReadOnlyAdmin):
    list_display = ["consumer", "stream", "sequence", "updated_at"]
