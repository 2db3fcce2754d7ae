"""Querysets that read any claude-flow version of a hive file.

A model declares the newest columns; an older file lacks some of them, and selecting a
missing column is an SQL error. So just before a queryset of model instances runs, it
defers every field whose column is absent from the file it is about to read (asked with
``PRAGMA table_info``, cached per connection, see :mod:`hive.introspection`), including the
fields of ``select_related`` models. A deferred field of an absent column then reads as
None without a query (``HiveModel.refresh_from_db``), and saving skips it.

Not covered, because nothing in the console needs them on old files: ``values()`` without
field names, ``bulk_create`` and ``aiterator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import models, router, transaction
from django.db.models.query import ModelIterable

from hive.introspection import absent_fields, defer_foreign_keys


class HiveQuerySet(models.QuerySet):
    """A queryset that defers absent columns and deletes with foreign-key checks at commit."""

    def _absent_lookups(self) -> list[str]:
        """``defer()`` names for the absent columns of the model and of its ``select_related`` models."""
        using = self.db
        lookups = [field.name for field in absent_fields(self.model, using)]
        select_related = self.query.select_related
        if select_related is True:
            select_related = _non_null_relations(self.model)
        if isinstance(select_related, dict):
            lookups += _related_absent_lookups(self.model, select_related, using, prefix="")
        return lookups

    def _defer_absent_columns(self) -> None:
        if self._iterable_class is not ModelIterable or getattr(self, "_hive_deferred", False):
            return
        if lookups := self._absent_lookups():
            self.query.add_deferred_loading(lookups)
        self._hive_deferred = True

    def _fetch_all(self) -> None:
        if self._result_cache is None:
            self._defer_absent_columns()
        super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Iterator[Any]:
        self._defer_absent_columns()
        return super().iterator(chunk_size=chunk_size)

    def delete(self) -> tuple[int, dict[str, int]]:
        using = self._db or router.db_for_write(self.model, **self._hints)
        with transaction.atomic(using=using, savepoint=False):
            defer_foreign_keys(using)
            return super().delete()

    delete.alters_data = True
    delete.queryset_only = True


def _non_null_relations(model: type[models.Model]) -> dict[str, Any]:
    """What ``select_related()`` without arguments follows: non-null foreign keys, one level here."""
    return {field.name: {} for field in model._meta.concrete_fields if field.is_relation and not field.null}


def _related_absent_lookups(model: type[models.Model], tree: dict[str, Any], using: str, prefix: str) -> list[str]:
    lookups = []
    for name, subtree in tree.items():
        related = model._meta.get_field(name).related_model
        path = f"{prefix}{name}__"
        lookups += [path + field.name for field in absent_fields(related, using)]
        lookups += _related_absent_lookups(related, subtree or {}, using, prefix=path)
    return lookups


class HiveManager(models.Manager.from_queryset(HiveQuerySet)):
    """Default and base manager of every hive model (so cascades and refreshes read old files too)."""


class HiveAgentQuerySet(HiveQuerySet):
    """Agents told apart by ``role``: claude-flow has no separate queens or workers table."""

    def queens(self) -> HiveAgentQuerySet:
        return self.filter(role="queen")

    def workers(self) -> HiveAgentQuerySet:
        """Every agent that is not a queen (old files may leave ``role`` empty for workers)."""
        return self.exclude(role="queen")


class HiveAgentManager(models.Manager.from_queryset(HiveAgentQuerySet)):
    """``HiveAgent.objects.queens()`` / ``.workers()``."""
