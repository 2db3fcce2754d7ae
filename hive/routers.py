"""Keep the Hive Mind models on their SQLite files and everything else off them.

claude-flow writes two SQLite files: ``hive.db`` (swarms, agents, tasks, collective memory,
consensus, sessions) and ``memory.db`` (the key/value ``memory_entries``). Each gets its own
database alias, and this router is the one place that knows which model lives in which file.
Nothing is ever migrated there: the files and their schema belong to claude-flow
(see :mod:`hive.schema` for the tables created when a file is new).
"""

from __future__ import annotations

from typing import Any

HIVE_APP = "hive"
HIVE_DB = "hive"
MEMORY_DB = "hive_memory"
HIVE_ALIASES = (HIVE_DB, MEMORY_DB)
MEMORY_MODELS = {"memoryentry"}


def hive_alias(model: Any) -> str:
    """The alias of the file holding ``model``'s table (``memory.db`` for memory entries)."""
    return MEMORY_DB if model._meta.model_name in MEMORY_MODELS else HIVE_DB


class HiveRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return hive_alias(model) if model._meta.app_label == HIVE_APP else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        hive1, hive2 = obj1._meta.app_label == HIVE_APP, obj2._meta.app_label == HIVE_APP
        if hive1 or hive2:
            return hive1 and hive2 and hive_alias(obj1) == hive_alias(obj2)
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        """Migrations run on PostgreSQL only; the hive files are claude-flow's, never migrated."""
        if db in HIVE_ALIASES:
            return False
        return app_label != HIVE_APP
