"""Form fields for values PostgreSQL stores as jsonb, refusing what it cannot hold.

Django's JSON form field accepts any text Python's json module reads, but PostgreSQL's jsonb
refuses ``\\u0000`` and ``NaN``/``Infinity``, and a lone surrogate (``"\\ud800"``) cannot even be
encoded as UTF-8 when the form is shown again: each was a server error on save or on redisplay.
Deep nesting made Python's JSON reader raise RecursionError, another server error. Here each
is a message on the field.
"""

from __future__ import annotations

import hashlib
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


# --- Optimistic concurrency: a change form refuses to save over a row that changed meanwhile ---

LOADED_VALUES_FIELD = "loaded_values"
SHOWN_VALUE_LENGTH = 120


def _digest(value: Any) -> str:
    """A short fingerprint of one field's value (its canonical JSON), for the hidden field."""
    text = json.dumps(value, sort_keys=True, default=str)  # ensure_ascii: lone surrogates stay escapes
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shown(value: Any) -> str:
    """A value as the conflict message shows it: short, and readable for the usual types."""
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, list | tuple):
        text = ", ".join(str(item) for item in value) or "(empty)"
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= SHOWN_VALUE_LENGTH else f"{text[: SHOWN_VALUE_LENGTH - 1]}…"


class ConcurrentEditGuard(forms.ModelForm):
    """A change form that remembers the values it was loaded with and refuses the save when the
    row changed since (the runtime or another admin wrote it), instead of writing over it.

    The hidden field holds a fingerprint per field; on save, the row is read again under
    ``SELECT ... FOR UPDATE`` (the admin saves in a transaction, so nothing can slip in between
    the check and the write) and every field whose fingerprint moved is listed as
    "field: your value / the value now". The fingerprints are then renewed, so saving again,
    having seen the changes, keeps the user's values. Fingerprints rather than ``updated_at``:
    the trigger moves updated_at on any UPDATE, also one that changes nothing the form shows.
    """

    loaded_values = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:  # also when bound: then it is not "changed" data
            self.initial[LOADED_VALUES_FIELD] = self._fingerprints(self.instance)

    def _guarded_fields(self) -> list[str]:
        """The row's columns the form shows, but its primary key: an inline formset adds the pk's
        field after __init__ (so the loaded fingerprints lack it), and a pk never moves anyway."""
        meta = self.instance._meta
        concrete = {field.name for field in meta.concrete_fields} - {meta.pk.name}
        return [name for name in self.fields if name in concrete]

    def _fingerprints(self, row: models.Model) -> str:
        meta = row._meta
        return json.dumps(
            {name: _digest(meta.get_field(name).value_from_object(row)) for name in self._guarded_fields()},
            sort_keys=True,
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk is None or self.instance._state.adding:
            return cleaned  # a new row: nothing was loaded
        try:
            loaded = json.loads(self.data.get(self.add_prefix(LOADED_VALUES_FIELD)) or "null")
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ValidationError(
                "This form does not say which values it was loaded with, so a change made since could be "
                "overwritten. Reload the page and make your change again; nothing was saved.",
                code="no_loaded_values",
            )
        current = type(self.instance)._default_manager.select_for_update().filter(pk=self.instance.pk).first()
        if current is None:
            raise ValidationError("This record was deleted since the form was loaded; nothing was saved.")
        now = json.loads(self._fingerprints(current))
        moved = [name for name in self._guarded_fields() if loaded.get(name) != now[name]]
        if not moved:
            return cleaned
        self.data = self.data.copy()  # show the fingerprints of now: saving again keeps your values
        self.data[self.add_prefix(LOADED_VALUES_FIELD)] = json.dumps(now, sort_keys=True)
        lines = [
            f"{self.fields[name].label or name}: your value {_shown(self._submitted(name))} / "
            f"the value now {_shown(self._current_value(current, name))}"
            for name in moved
        ]
        raise ValidationError(
            [
                ValidationError(
                    "This record changed since the form was loaded; nothing was saved. What changed:",
                    code="changed_since_loaded",
                ),
                *(ValidationError(line, code="changed_since_loaded") for line in lines),
                ValidationError(
                    "Save again to keep your values, or reload the page to start from the values now.",
                    code="changed_since_loaded",
                ),
            ]
        )

    def _submitted(self, name: str) -> Any:
        if name in self.cleaned_data:
            return self.cleaned_data[name]
        return self[name].value()

    @staticmethod
    def _current_value(row: models.Model, name: str) -> Any:
        field = row._meta.get_field(name)
        return getattr(row, name) if field.is_relation else field.value_from_object(row)
