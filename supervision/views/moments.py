"""The moments of the past tree (``?at=`` and ``?compare=``): read from the query string, and
written into links (a step back or forward, "5 minutes before this failure").

A moment is ISO 8601; one without a time zone (what a datetime-local field sends) is read in the
console's time zone (settings.TIME_ZONE), the zone the page's own field shows it in.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

BEFORE_FAILURE = timedelta(minutes=5)
# The steps the time control offers, as (label, offset from the moment shown).
STEPS = (
    ("-1 h", timedelta(hours=-1)),
    ("-5 min", timedelta(minutes=-5)),
    ("+5 min", timedelta(minutes=5)),
    ("+1 h", timedelta(hours=1)),
)
INPUT_FORMAT = "%Y-%m-%dT%H:%M:%S"  # a datetime-local field's value, to the second


class BadMoment(ValueError):
    """A moment the page cannot show; the message says why, for the person who asked."""


def parse_moment(text: str, name: str = "at") -> datetime:
    """``text`` as an aware datetime not in the future; BadMoment with a readable message otherwise."""
    text = text.strip()
    try:
        moment = parse_datetime(text.replace(" ", "+", 1) if text.count(" ") == 1 and "T" in text else text)
    except ValueError:
        moment = None
    if moment is None:
        shown = text[:60]
        raise BadMoment(f"“{shown}” is not a moment for ?{name}=: use a date and time such as 2026-12-05T14:30:00Z.")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    if moment > timezone.now() + timedelta(seconds=5):
        raise BadMoment(f"{moment.isoformat()} (?{name}=) is in the future: the tree shows what was, not what will be.")
    return moment


def iso(moment: datetime) -> str:
    """The moment as links and ``<time datetime>`` carry it: UTC, to the microsecond it has."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def input_value(moment: datetime) -> str:
    """The moment as the time control's datetime-local field shows it (the console's time zone)."""
    return timezone.localtime(moment).strftime(INPUT_FORMAT)


def past_tree_url(at: datetime, node: uuid.UUID | str | None = None, compare: datetime | None = None) -> str:
    """The tree as it was at ``at`` (opened at ``node``; with ``compare``: the diff of the two)."""
    query = {"at": iso(at)}
    if compare is not None:
        query["compare"] = iso(compare)
    if node is not None:
        query["node"] = str(node)
    return f"{reverse('supervision:tree')}?{urlencode(query)}"


def before_failure_url(node: uuid.UUID | str, occurred_at: datetime) -> str:
    """The tree 5 minutes before a failure, opened at its node, compared with the failure's moment."""
    return past_tree_url(occurred_at - BEFORE_FAILURE, node, compare=occurred_at)


def steps(at: datetime, node: str | None) -> list[dict[str, str]]:
    """The time control's steps from ``at``; a step past now is left out."""
    now = timezone.now()
    return [{"label": label, "url": past_tree_url(at + offset, node)} for label, offset in STEPS if at + offset <= now]
