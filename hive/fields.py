"""Timestamps as claude-flow stores them, read without trusting their format.

``hive.db`` declares its timestamps ``DATETIME DEFAULT CURRENT_TIMESTAMP``: SQLite stores
text, normally ``YYYY-MM-DD HH:MM:SS`` in UTC, but the tool's JavaScript also writes ISO
strings (``2025-01-02T03:04:05.678Z``) and sometimes ``Date.now()`` milliseconds. Django's
own ``DateTimeField`` converter raises on anything but the first two, so one odd row would
take a whole admin page down. ``memory.db`` uses unix seconds (integers) instead.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# Above this a number is taken for milliseconds (1e11 seconds is the year 5138).
_MILLISECONDS_FROM = 100_000_000_000


def unix_now() -> int:
    """The current time in unix seconds, as ``strftime('%s', 'now')`` gives it."""
    return int(time.time())


def from_unix(value: Any) -> datetime.datetime | None:
    """An aware UTC datetime from unix seconds (or milliseconds); None for no or a bad value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if abs(number) >= _MILLISECONDS_FROM:
        number /= 1000
    try:
        return datetime.datetime.fromtimestamp(number, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_timestamp(value: Any) -> datetime.datetime | None:
    """Whatever claude-flow stored, as an aware datetime (naive text is UTC); None if unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, int | float):
        return from_unix(value)
    else:
        text = str(value).strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return from_unix(text)
        try:
            parsed = parse_datetime(text)
        except ValueError:
            return None
        if parsed is None:
            return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


class TextTimestampField(models.DateTimeField):
    """A ``DATETIME`` text column: read leniently, written the way ``CURRENT_TIMESTAMP`` writes.

    The column is selected as ``CAST(... AS TEXT)`` and reported to the backend as text: the
    sqlite3 driver (``DATETIME`` declared type) and Django's converter would otherwise parse it
    first, dropping numbers and raising on a well-formed but impossible date. Forms, admin
    widgets and display still treat the field as a datetime.
    """

    def get_internal_type(self) -> str:
        return "TextField"

    def select_format(self, compiler: Any, sql: str, params: Any) -> tuple[str, Any]:
        sql, params = super().select_format(compiler, sql, params)
        if compiler.connection.vendor == "sqlite":
            sql = f"CAST({sql} AS TEXT)"
        return sql, params

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> datetime.datetime | None:
        return parse_timestamp(value)

    def to_python(self, value: Any) -> datetime.datetime | None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
        return super().to_python(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if isinstance(value, datetime.datetime):
            if timezone.is_aware(value):
                value = value.astimezone(datetime.UTC).replace(tzinfo=None)
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value
