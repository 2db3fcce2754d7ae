"""Form fields for values PostgreSQL stores as jsonb, refusing what it cannot hold.

Django's JSON form field accepts any text Python's json module reads, but PostgreSQL's jsonb
refuses ``\\u0000`` and ``NaN``/``Infinity``, and a lone surrogate (``"\\ud800"``) cannot even be
encoded as UTF-8 when the form is shown again: each was a server error on save or on redisplay.
Deep nesting made Python's JSON reader raise RecursionError, another server error. Here each
is a message on the field.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

MAX_DEPTH = 100
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(value: Any) -> str | None:
    """Why PostgreSQL's jsonb cannot hold ``value`` (walked without recursion), or None."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"The JSON is nested deeper than {MAX_DEPTH} levels."
        if isinstance(current, str) and UNSTORABLE.search(current):
            return "The JSON holds \\u0000 or an unpaired surrogate (\\ud800-\\udfff), which cannot be stored."
        if isinstance(current, float) and not math.isfinite(current):
            return "NaN and Infinity are not JSON numbers."
        if isinstance(current, dict):
            stack.extend((key, depth + 1) for key in current)
            stack.extend((child, depth + 1) for child in current.values())
        elif isinstance(current, list):
            stack.extend((child, depth + 1) for child in current)
    return None


class StorableJSONField(forms.JSONField):
    def to_python(self, value: Any) -> Any:
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise ValidationError(f"The JSON is nested deeper than {MAX_DEPTH} levels.", code="invalid") from None
        problem = unstorable(converted)
        if problem:
            raise ValidationError(problem, code="invalid")
        return converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        """The text shown in the form; escaped to ASCII when it holds a lone surrogate (which
        cannot be sent as UTF-8), so a refused value is shown again instead of failing the page."""
        text = super().prepare_value(value)
        if isinstance(text, str) and not isinstance(value, forms.fields.InvalidJSONInput) and UNSTORABLE.search(text):
            return json.dumps(value, cls=self.encoder)  # ensure_ascii: \\ud800 stays an escape
        return text


# For a ModelAdmin's or an inline's ``formfield_overrides``.
STORABLE_JSON = {models.JSONField: {"form_class": StorableJSONField}}


# A text column under a btree index (a unique name, a sort index) takes at most about 2,700 bytes
# per entry; a longer value fails the INSERT. The runtime's names are short: 255 characters is
# the bound its messages get too (agents.events.MAX_NAME).
INDEXED_TEXT_MAX_LENGTH = 255


class IndexedTextLimitMixin:
    """For a ModelAdmin or inline: its ``indexed_text_fields`` get a maximum length in the form."""

    indexed_text_fields: tuple[str, ...] = ()

    def formfield_for_dbfield(self, db_field: models.Field, request: Any, **kwargs: Any) -> forms.Field | None:
        if db_field.name in self.indexed_text_fields:
            kwargs.setdefault("max_length", INDEXED_TEXT_MAX_LENGTH)
        return super().formfield_for_dbfield(db_field, request, **kwargs)
