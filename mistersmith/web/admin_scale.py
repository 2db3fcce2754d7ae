"""Admin changelists that stay fast on tables with millions of rows.

Two things make Django's stock changelist slow on ``supervision_failures``: an exact
``COUNT(*)`` of the whole (filtered) table for the paginator and the result counter, and the
date hierarchy's ``SELECT DISTINCT date_trunc(...)`` over every matching row. Here the count is
exact only up to a limit and estimated by the planner beyond it, and the date hierarchy is built
from the first and last date (two index lookups) instead of a scan.

And three make every row of a changelist dear under load (docs/deploy.md, "Pages under load"):
the second ``COUNT(*)`` of the whole table for "(N total)", the action checkbox rendered through
a form widget's template per row, and a ``reverse()`` per row for the row's link. A free-text
column's filter reads its values with ``SELECT DISTINCT`` over the table: :class:`IndexedValuesFilter`
walks the column's index instead.
"""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import quote as url_quote

from django.conf import settings
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections, router
from django.db.models import Field, Max, Min, Model, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.translation import gettext as _

PK_MARKER = "pkmarker0"  # stands for a row's key in its change URL, reversed once per page


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


class LightRowsChangeList(ChangeList):
    """The changelist of :class:`LightChangelistMixin`: each row's link from one ``reverse()`` per page."""

    @cached_property
    def change_url_parts(self) -> tuple[str, str]:
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        url = reverse(name, args=(PK_MARKER,), current_app=self.model_admin.admin_site.name)
        before, after = url.split(PK_MARKER)
        return before, after

    def url_for_result(self, result: Model) -> str:
        """As ``reverse()`` would write it: the key quoted as the admin quotes it, then as reverse() does."""
        before, after = self.change_url_parts
        key = url_quote(str(quote(getattr(result, self.pk_attname))), safe=RFC3986_SUBDELIMS + "/~:@")
        return f"{before}{key}{after}"


class LightChangelistMixin:
    """The same changelist for less work per page: one COUNT, and rows without per-cell templates.

    ``show_full_result_count = False``: a filtered page says "N results (Show all)" instead of
    counting the whole table a second time (on an unfiltered page Django counted it twice).
    ``list_per_page = 50``: rendering the rows is most of a changelist's CPU (about 0.4 ms a row);
    50 rows a page, as the failures and restarts have, instead of Django's 100 (docs/deploy.md,
    "Pages under load").
    """

    show_full_result_count = False
    list_per_page = 50

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return LightRowsChangeList

    def action_checkbox(self, obj: Model) -> str:
        """The HTML of ``ModelAdmin.action_checkbox`` without rendering a CheckboxInput's template per row."""
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


def indexed_distinct_values(model: type[Model], field: Field) -> list:
    """The column's distinct values in order, one index probe per value (a "loose index scan").

    ``SELECT DISTINCT`` reads every row (20 ms at 100,000 agents); walking a b-tree index on the
    column from each value to the next reads as many entries as there are values. Needs that index.
    """
    database = router.db_for_read(model)
    table = connections[database].ops.quote_name(model._meta.db_table)
    column = connections[database].ops.quote_name(field.column)
    sql = f"""
        WITH RECURSIVE walk(value) AS (
            (SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
            UNION ALL
            SELECT (SELECT {column} FROM {table} WHERE {column} > walk.value ORDER BY {column} LIMIT 1)
            FROM walk WHERE walk.value IS NOT NULL
        )
        SELECT value FROM walk WHERE value IS NOT NULL
    """
    with connections[database].cursor() as cursor:
        cursor.execute(sql)
        values = [row[0] for row in cursor.fetchall()]
        if field.null:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} IS NULL)")
            if cursor.fetchone()[0]:
                values.append(None)
    return values


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter by every value of a column, its values read through the column's index.

    For a column of the admin's own model whose queryset is the whole table (the choices are every
    value in the table, as Django's own filter lists them then); the column needs a b-tree index.
    """

    def __init__(self, field: Field, request: Any, params: dict, model: type[Model], model_admin: Any, field_path: str):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = indexed_distinct_values(model, field)


class LargeTableAdmin(LightChangelistMixin, admin.ModelAdmin):
    """A ModelAdmin for tables too big to count or scan on every page view."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request: Any) -> QuerySet:
        return with_range_dates(super().get_queryset(request))
