"""The Hive Mind app: claude-flow's SQLite files, shown and edited through the admin."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class HiveConfig(AppConfig):
    name = "hive"
    verbose_name = "Hive Mind"

    def ready(self) -> None:
        """Make the files' directories, then prepare each hive connection as it opens."""
        from hive.schema import ensure_database_dirs, on_connection_created

        ensure_database_dirs()
        connection_created.connect(on_connection_created, dispatch_uid="hive.schema.on_connection_created")
