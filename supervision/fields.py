"""PostgreSQL enum columns (CREATE TYPE ... AS ENUM) as Django fields."""

from __future__ import annotations

from typing import Any

from django.db import models


class PgEnumField(models.CharField):
    """A text value stored in a PostgreSQL enum type the runtime declared (e.g. ``node_type``).

    The type itself is created by the migration's SQL, exactly as CONTRACTS.md names it; this
    field only tells Django the column type and restricts choices to the enum's labels.
    """

    def __init__(self, *args: Any, enum_type: str, **kwargs: Any) -> None:
        self.enum_type = enum_type
        kwargs.setdefault("max_length", 63)  # PostgreSQL's limit on an enum label
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["enum_type"] = self.enum_type
        kwargs.pop("max_length", None)
        return name, path, args, kwargs

    def get_prep_value(self, value: Any) -> Any:
        """A label of the enum, or ValueError before any SQL runs: PostgreSQL fails a whole
        statement on an unknown label, even in a comparison (``?status__exact=foo`` in the admin
        was a server error; a ValueError is what the admin's filters turn into "bad filter")."""
        value = super().get_prep_value(value)
        if isinstance(value, str) and self.choices and value not in {choice for choice, _ in self.flatchoices}:
            raise ValueError(f"{value[:40]!r} is not a label of the {self.enum_type} type.")
        return value

    def db_type(self, connection: Any) -> str:
        return self.enum_type

    def rel_db_type(self, connection: Any) -> str:
        return self.enum_type
