"""The policy form: it teaches what each value does while it is edited.

Every field says what it changes in the runtime's decision (``HELP_TEXTS``); the escalating error
types are the runtime's failure reasons as checkboxes (stored in the TEXT[] column unchanged:
the variant names); the backoff factor acts only on Exponential backoff, so policy_form.js shows
it only there and the form refuses a changed factor with another backoff; and a saved change is
described field by field as "old → new" (:func:`changed_fields`), which the admin writes into its
history (LogEntry) instead of the bare field names Django records.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms

from mistersmith.web.forms import LOADED_VALUES_FIELD, ConcurrentEditGuard
from supervision.backtest import SETTINGS_FIELDS
from supervision.models import BackoffStrategy, FailureReason, SupervisionNode, SupervisionPolicy

FACTOR_STRATEGY = BackoffStrategy.EXPONENTIAL  # the one backoff that reads backoff_factor
NONE_SHOWN = "(none)"
WITHOUT_FACTOR = {
    BackoffStrategy.LINEAR: "Linear adds 1000 ms per attempt",
    BackoffStrategy.FIXED: "Fixed always waits the minimum delay",
}

HELP_TEXTS = {
    "node": "The supervision node this policy governs; a node has at most one policy.",
    "supervision_strategy": (
        "Which children restart when one fails: OneForOne only the failed child; OneForAll all of them; "
        "RestForOne the failed child and those started after it; Escalate none: the failure goes to the parent."
    ),
    "max_restarts": (
        "How many failures inside the time window the node may have and still be restarted; "
        "at this many, the runtime stops restarting (0: never restart)."
    ),
    "time_window_seconds": "The window, in seconds, over which failures are counted against the maximum.",
    "backoff_strategy": (
        "How the wait before each restart grows: Fixed always waits the minimum delay; Linear adds 1000 ms "
        "per attempt; Exponential multiplies the minimum by the factor at each attempt. Never above the maximum."
    ),
    "backoff_factor": (
        "Used only by Exponential backoff: the delay of attempt n is the minimum delay x factor^(n-1); "
        "above 1 (2.00 doubles the wait at each attempt)."
    ),
    "min_restart_delay_ms": "The shortest wait before a restart, in milliseconds: the first attempt's delay.",
    "max_restart_delay_ms": "The longest wait before a restart, in milliseconds: no delay grows past it.",
    "escalate_on_limit": "When the restarts are used up, hand the failure to the parent supervisor.",
    "escalate_on_error_types": (
        "Failures of these kinds go to the parent at once, without a restart here. None ticked: every "
        "kind is restarted by this policy."
    ),
    "escalation_timeout_seconds": (
        "How long, in seconds, the parent has to take an escalated failure before the runtime gives up on it."
    ),
}


class ErrorTypesField(forms.MultipleChoiceField):
    """The runtime's failure reasons as checkboxes; also reads the column's comma-separated text
    (what the field took before), so a script posting "Crash,HeartbeatTimeout" keeps working."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: Any) -> list[str]:
        items = super().to_python(value)
        return [part.strip() for item in items for part in item.split(",") if part.strip()]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return set(initial or []) != set(self.to_python(data))


def _factor_display(value: Any) -> str:
    return f"{Decimal(value):.2f}" if value not in (None, "") else NONE_SHOWN


class PolicyForm(ConcurrentEditGuard):
    """The policy form (its own page and the node page's inline), refusing to save over a policy
    changed since it was loaded, with help on every field."""

    escalate_on_error_types = ErrorTypesField(
        choices=FailureReason.choices, required=False, label="Escalate on error types"
    )

    class Meta:
        model = SupervisionPolicy
        fields = "__all__"
        help_texts = HELP_TEXTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A view-only user's form has neither field (the admin shows them read-only).
        field = self.fields.get("escalate_on_error_types")
        if field is not None:
            field.help_text = HELP_TEXTS["escalate_on_error_types"]
            # A kind the runtime stored but the console does not know stays visible (ticked), so that
            # saving does not drop it unseen; the model's clean() then names it as unknown.
            stored = self.initial.get("escalate_on_error_types") or []
            unknown = [kind for kind in stored if kind not in FailureReason.values]
            if unknown:
                extra = [(kind, f"{kind} (unknown to the console)") for kind in unknown]
                field.choices = [*FailureReason.choices, *extra]
        if "backoff_factor" in self.fields:
            self.fields["backoff_factor"].widget.attrs["data-acts-with"] = FACTOR_STRATEGY

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        strategy = cleaned.get("backoff_strategy")
        if strategy and strategy != FACTOR_STRATEGY and "backoff_factor" in self.changed_data:
            self.add_error(
                "backoff_factor",
                f"The factor acts only with Exponential backoff; {strategy} backoff ignores it "
                f"({WITHOUT_FACTOR.get(strategy, 'no factor')}). Choose Exponential to use a factor, "
                f"or leave it at {_factor_display(self.initial_factor())}.",
            )
        return cleaned

    def initial_factor(self) -> Any:
        return self.get_initial_for_field(self.fields["backoff_factor"], "backoff_factor")


class PolicySettingsForm(forms.ModelForm):
    """A policy's settings not saved yet (the backtest's edited values), validated as the policy
    form validates them: the model's fields and its clean(), the error types as the form reads them."""

    escalate_on_error_types = ErrorTypesField(
        choices=FailureReason.choices, required=False, label="Escalate on error types"
    )

    class Meta:
        model = SupervisionPolicy
        fields = list(SETTINGS_FIELDS)


def _shown(field: forms.Field, value: Any) -> str:
    """A value as the form shows it: a choice's label, yes/no, a list joined, (none) for empty."""
    if value is None or value == "" or value == []:
        return NONE_SHOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(field, item) for item in value)
    if isinstance(field, forms.ModelChoiceField):  # never its choices: every node of the tree
        return str(value if hasattr(value, "pk") else SupervisionNode.objects.filter(pk=value).first() or value)
    choices = dict(getattr(field, "choices", []) or [])
    return str(choices.get(value, value))


def changed_fields(form: forms.ModelForm, names: Iterable[str] | None = None) -> list[str]:
    """Each changed field as "Label: old → new", in the form's field order (the hidden fingerprints
    of the concurrency guard are no change)."""
    lines = []
    for name in names if names is not None else form.changed_data:
        if name == LOADED_VALUES_FIELD or name not in form.fields:
            continue
        field = form.fields[name]
        old = form.get_initial_for_field(field, name)
        new = form.cleaned_data.get(name)
        if name == "backoff_factor":
            old, new = _factor_display(old), _factor_display(new)
        lines.append(f"{field.label or name}: {_shown(field, old)} → {_shown(field, new)}")
    return lines


def with_old_and_new(
    message: list[dict[str, Any]],
    page_form: forms.ModelForm | None = None,
    inline_forms: Iterable[forms.ModelForm] = (),
) -> list[dict[str, Any]]:
    """Django's change message (a list of dicts, as ModelAdmin.construct_change_message builds it)
    with the field names of a changed policy replaced by "Label: old → new";
    LogEntry.get_change_message, and so the admin's history page, shows those as they are.
    ``page_form`` is the policy page's own form (its entry names no object); ``inline_forms`` are
    the node page's policy forms (their entries name the policy by str())."""
    by_name = {str(form.instance): form for form in inline_forms if form.has_changed()}
    for entry in message:
        changed = entry.get("changed")
        if not changed:
            continue
        form = by_name.get(changed["object"]) if "object" in changed else page_form
        if form is not None and hasattr(form, "cleaned_data"):
            changed["fields"] = changed_fields(form)
    return message
