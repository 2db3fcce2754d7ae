"""The discovery store (CONTRACTS.md §4), rebuilt in the console.

The runtime keeps at most 1,000 discoveries in memory, evicting the oldest first, indexed by
agent and by type. The console keeps the same set in PostgreSQL (so every worker answers the
same and a restart loses nothing), fed by the bridge from the DISCOVERIES stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet

from agents.models import Discovery, DiscoveryType
from mistersmith.jetstream.messages import InvalidMessage, clean_text, open_envelope, parse_timestamp

CAPACITY = 1000
# A filter's lists: enough for any person, not enough to make one query of thousands of OR terms.
MAX_FILTER_ITEMS = 50
MAX_FILTER_TEXT = 200
TYPE_BY_NAME = {value.lower(): value for value in DiscoveryType.values}


def parse_discovery(message: Any, *, sequence: int | None = None) -> Discovery:
    """A Discovery (unsaved) from a decoded message, enveloped or bare; InvalidMessage otherwise.

    content and related_to are kept whole: the runtime puts whole agent replies and whole earlier
    discoveries there, and the stream's maximum message size (DISCOVERIES: 64 KiB) bounds them.
    The pages show a preview with a way to see the whole text."""
    wrapped = open_envelope(message)
    body = wrapped.payload
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", "a discovery is an object")
    texts = {}
    for key in ("agent_id", "agent_role", "content"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidMessage("bad_field", f"{key} is missing or not text")
        texts[key] = clean_text(value)
    kind = TYPE_BY_NAME.get(str(body.get("discovery_type", "")).lower())
    if kind is None:
        raise InvalidMessage("bad_field", "discovery_type is not one of " + ", ".join(DiscoveryType.values))
    confidence = body.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise InvalidMessage("bad_field", "confidence is not a number from 0 to 1")
    related = body.get("related_to")
    if related is not None and not isinstance(related, str):
        raise InvalidMessage("bad_field", "related_to is not text")
    message_id = wrapped.message_id
    return Discovery(
        message_id=clean_text(message_id[:200]) if message_id else None,  # the column's length
        agent_id=texts["agent_id"][:100],
        agent_role=texts["agent_role"][:100],
        discovery_type=kind,
        content=texts["content"],
        confidence=float(confidence),
        timestamp=parse_timestamp(body.get("timestamp")),
        related_to=clean_text(related) if related else None,
        stream_sequence=sequence,
    )


def add_discoveries(discoveries: Iterable[Discovery]) -> int:
    """Store new discoveries (a repeated stream sequence is ignored) and evict beyond CAPACITY, oldest first."""
    with transaction.atomic():
        created = Discovery.objects.bulk_create(list(discoveries), ignore_conflicts=True)
        keep_from = Discovery.objects.order_by("-id").values_list("id", flat=True)[CAPACITY - 1 : CAPACITY]
        if keep_from:
            Discovery.objects.filter(id__lt=keep_from[0]).delete()
    return len(created)


@dataclass
class DiscoveryFilter:
    """The runtime's subscription filter; a subscriber never receives its own discoveries."""

    types: list[str] = field(default_factory=list)
    agent_roles: list[str] = field(default_factory=list)
    min_confidence: float | None = None
    keywords: list[str] = field(default_factory=list)
    subscriber: str | None = None

    @classmethod
    def from_query(cls, params: Any) -> DiscoveryFilter:
        """From query parameters (comma-separated lists); bad values raise ValueError with a clear text.

        A NUL character is refused here (PostgreSQL cannot compare text with one: the query would
        fail with a server error), and so are lists longer than MAX_FILTER_ITEMS or values longer
        than MAX_FILTER_TEXT characters."""
        for name in ("types", "agent_roles", "keywords", "subscriber", "min_confidence"):
            if "\x00" in (params.get(name) or ""):
                raise ValueError(f"{name} must not contain NUL characters.")

        def listed(name: str) -> list[str]:
            found = [part.strip() for part in params.get(name, "").split(",") if part.strip()]
            if len(found) > MAX_FILTER_ITEMS:
                raise ValueError(f"Give at most {MAX_FILTER_ITEMS} {name}.")
            if any(len(part) > MAX_FILTER_TEXT for part in found):
                raise ValueError(f"Each of {name} must be at most {MAX_FILTER_TEXT} characters.")
            return found

        types = []
        for name in listed("types"):
            if name.lower() not in TYPE_BY_NAME:
                raise ValueError(f"Unknown discovery type {name!r}; use {', '.join(DiscoveryType.values)}.")
            types.append(TYPE_BY_NAME[name.lower()])
        minimum = params.get("min_confidence")
        if minimum not in (None, ""):
            try:
                minimum = float(minimum)
            except ValueError:
                raise ValueError("min_confidence must be a number from 0 to 1.") from None
            if not math.isfinite(minimum) or not 0 <= minimum <= 1:
                raise ValueError("min_confidence must be a number from 0 to 1.")
        else:
            minimum = None
        subscriber = params.get("subscriber") or None
        if subscriber is not None and len(subscriber) > MAX_FILTER_TEXT:
            raise ValueError(f"subscriber must be at most {MAX_FILTER_TEXT} characters.")
        return cls(types, listed("agent_roles"), minimum, listed("keywords"), subscriber)

    def apply(self, queryset: QuerySet) -> QuerySet:
        if self.types:
            queryset = queryset.filter(discovery_type__in=self.types)
        if self.agent_roles:
            queryset = queryset.filter(agent_role__in=self.agent_roles)
        if self.min_confidence is not None:
            queryset = queryset.filter(confidence__gte=self.min_confidence)
        if self.keywords:
            matches = Q()
            for keyword in self.keywords:
                matches |= Q(content__icontains=keyword)
            queryset = queryset.filter(matches)
        if self.subscriber:
            queryset = queryset.exclude(agent_id=self.subscriber)
        return queryset

    def matches(self, discovery: dict[str, Any]) -> bool:
        """The same filter over one discovery in its contract shape (a live frame's event)."""
        content = str(discovery.get("content", "")).lower()
        confidence = discovery.get("confidence")
        confident = isinstance(confidence, int | float) and confidence >= (self.min_confidence or 0)
        return (
            (not self.types or discovery.get("discovery_type") in self.types)
            and (not self.agent_roles or discovery.get("agent_role") in self.agent_roles)
            and (self.min_confidence is None or confident)
            and (not self.keywords or any(keyword.lower() in content for keyword in self.keywords))
            and not (self.subscriber and discovery.get("agent_id") == self.subscriber)
        )


def search(discovery_filter: DiscoveryFilter) -> QuerySet:
    """The held discoveries matching a filter, newest first."""
    return discovery_filter.apply(Discovery.objects.order_by("-timestamp", "-id"))


def stats(active_subscriptions: int = 0) -> dict[str, Any]:
    """The runtime's store stats. One aggregate query, so total_discoveries, discovery_types,
    unique_agents and capacity_used all count the same rows (separate queries could each see a
    different moment of a store the bridge keeps changing), and capacity_used is exactly
    100 x total / CAPACITY (two decimals: 1 of 1,000 is 0.1 %, never rounded to a neighbour)."""
    by_type = dict(Discovery.objects.values_list("discovery_type").annotate(n=Count("id")).order_by())
    total = sum(by_type.values())
    return {
        "total_discoveries": total,
        "unique_agents": Discovery.objects.values("agent_id").distinct().count(),
        "discovery_types": by_type,
        "active_subscriptions": active_subscriptions,
        "capacity_used": round(100 * total / CAPACITY, 1),
    }
