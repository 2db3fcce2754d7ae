"""Admin changelists that stay fast on tables with millions of rows.

Two things make Django's stock changelist slow on ``supervision_failures``: an exact
``COUNT(*)`` of the whole (filtered) table for the paginator and the result counter, and the
date hierarchy's ``SELECT DISTINCT date_trunc(...)`` over every matching row. Here the count is
exact only up to a limit and estimated by the planner beyond it, and the date hierarchy is built
from the first and last date (two index lookups) instead of a scan.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Max, Min, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property


def planner_estimate(queryset: QuerySet) -> int:
    """PostgreSQL's own row estimate for a query (EXPLAIN, nothing is read)."""
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``ADMIN_EXACT_COUNT_LIMIT`` rows, then trusts the planner's estimate."""

    @cached_property
    def count(self) -> int:
        limit = settings.ADMIN_EXACT_COUNT_LIMIT
        bounded = self.object_list.order_by()[: limit + 1].count()
        if bounded <= limit:
            return bounded
        return max(planner_estimate(self.object_list.order_by()), limit + 1)

    @property
    def is_estimate(self) -> bool:
        return self.count > settings.ADMIN_EXACT_COUNT_LIMIT


def _truncate(value: datetime.datetime, kind: str) -> datetime.datetime:
    value = timezone.localtime(value) if timezone.is_aware(value) else value
    if kind == "year":
        return value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if kind == "month":
        return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _step(value: datetime.datetime, kind: str) -> datetime.datetime:
    if kind == "year":
        return value.replace(year=value.year + 1)
    if kind == "month":
        return value.replace(year=value.year + value.month // 12, month=value.month % 12 + 1)
    return value + datetime.timedelta(days=1)


class RangeDatesQuerySet(QuerySet):
    """``dates()``/``datetimes()`` from the first and last value: every period in between, no scan.

    A period with no rows can appear in the hierarchy; that is the price of not reading them all.
    """

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> list:  # type: ignore[override]
        bounds = self.order_by().aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        periods, current, last = [], _truncate(bounds["first"], kind), _truncate(bounds["last"], kind)
        while current <= last:
            periods.append(current)
            current = _step(current, kind)
        return periods if order == "ASC" else periods[::-1]

    dates = datetimes  # type: ignore[assignment]


def with_range_dates(queryset: QuerySet) -> QuerySet:
    """The same query, with :class:`RangeDatesQuerySet`'s cheap date hierarchy."""
    clone = queryset._chain()
    if not isinstance(clone, RangeDatesQuerySet):
        clone.__class__ = type(f"RangeDates{type(clone).__name__}", (RangeDatesQuerySet, type(clone)), {})
    return clone


class LargeTableAdmin(admin.ModelAdmin):
    """A ModelAdmin for tables too big to count or scan on every page view."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request: Any) -> QuerySet:
        return with_range_dates(super().get_queryset(request))
