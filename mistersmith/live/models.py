"""The bridge's own state: how far each consumer has applied, what it could not read, and the
runtime's last answers to the health requests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from mistersmith.jetstream.messages import excerpt

DEAD_LETTER_KEEP = 1000


class BridgePosition(models.Model):
    """The last stream sequence a consumer applied, committed with the changes it made.

    A message redelivered after a crash (applied and committed, but not yet acked) has a sequence
    at or below this and is skipped: replays change nothing twice.

    ``framed_sequence``: every change at or below it is known to have reached the live pages (its
    frames were sent). The changes in (framed_sequence, sequence] were committed but their frames
    may have died with the bridge: the next leader sends them again (mistersmith/live/bridge.py,
    "Frames across a leader change"). NULL (rows older than the column) means "= sequence".
    ``unframed_results``: in that range, what applying each state event did (``{"sequence":
    result}``): a page reads the result, and it cannot be computed again after the fact.
    """

    consumer = models.CharField(max_length=100, unique=True)
    stream = models.CharField(max_length=64)
    sequence = models.BigIntegerField(default=0)
    framed_sequence = models.BigIntegerField(null=True, blank=True)
    unframed_results = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.consumer} at {self.stream} #{self.sequence}"


class DeadLetter(models.Model):
    """A message the bridge refused (acked, counted, kept here for operators; the newest 1,000)."""

    stream = models.CharField(max_length=64)
    subject = models.CharField(max_length=255)
    sequence = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=64, db_index=True)
    error = models.TextField()
    payload_excerpt = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        # The event log (a live tail and replay of every stream) shows raw runtime messages: its own right.
        permissions = [("view_event_log", "Can watch and replay the event log of the streams")]

    def __str__(self) -> str:
        return f"{self.subject} #{self.sequence}: {self.reason}"

    @classmethod
    def record(cls, *, stream: str, subject: str, sequence: int | None, reason: str, error: str, data: bytes) -> None:
        cls.objects.create(
            stream=stream,
            subject=subject[:255],
            sequence=sequence,
            reason=reason[:64],
            error=error[:2000].replace("\x00", "\ufffd"),
            payload_excerpt=excerpt(data),
        )

    @classmethod
    def prune(cls) -> int:
        """Keep the newest DEAD_LETTER_KEEP rows."""
        cutoff = cls.objects.order_by("-id").values_list("id", flat=True)[DEAD_LETTER_KEEP : DEAD_LETTER_KEEP + 1]
        return cls.objects.filter(id__lte=cutoff[0]).delete()[0] if cutoff else 0


class RuntimeProbe(models.Model):
    """The last SystemHealth or PoolStatus request the leading bridge sent the runtime, and the
    last answer (one row per kind). Kept in PostgreSQL so every worker shows the same answer.

    ``unanswered_since`` is the first request that went unanswered after the last answer: the
    pages say "no answer for N s" from it, a figure that grows while the runtime stays silent.
    """

    KINDS = (("SystemHealth", "SystemHealth"), ("PoolStatus", "PoolStatus"))

    kind = models.CharField(max_length=32, unique=True, choices=KINDS)
    asked_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    unanswered_since = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.kind}: {self.describe()['text']}"

    @classmethod
    def record_asked(cls, kind: str, request_id: str, at: dt.datetime) -> None:
        cls.objects.update_or_create(kind=kind, defaults={"asked_at": at, "request_id": request_id})

    @classmethod
    def record_answer(cls, kind: str, *, ok: bool, message: str, data: Any, error: str, at: dt.datetime) -> None:
        """An answer: Success keeps its data; an Error reply keeps the last data and says why."""
        values: dict[str, Any] = {"answered_at": at, "unanswered_since": None, "error": error[:2000]}
        if ok:
            values.update(message=message[:2000], data=data)
        cls.objects.update_or_create(kind=kind, defaults=values)

    @classmethod
    def record_silence(cls, kind: str, *, asked_at: dt.datetime, reason: str) -> None:
        """No answer in time (or the request could not be sent): silence counts from the first such ask."""
        with transaction.atomic():
            probe, _ = cls.objects.select_for_update().get_or_create(kind=kind, defaults={"asked_at": asked_at})
            probe.unanswered_since = probe.unanswered_since or asked_at
            probe.error = reason[:2000]
            probe.save(update_fields=["unanswered_since", "error"])

    def describe(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """What a page, /metrics and verify_state show: a state, the figures and one line of text.

        States: ``never_asked``, ``waiting`` (asked, no answer yet, none overdue), ``answered``,
        ``error`` (the runtime answered with an error), ``no_answer`` (asked, none came in time).
        """
        now = now or timezone.now()
        age = (now - self.answered_at).total_seconds() if self.answered_at else None
        silent = (now - self.unanswered_since).total_seconds() if self.unanswered_since else None
        if self.asked_at is None:
            state, text = "never_asked", "never asked"
        elif silent is not None:
            state, text = "no_answer", f"no answer for {silent:.0f} s"
            if age is not None:
                text += f" (last answer {age:.0f} s ago)"
        elif age is None:
            state, text = "waiting", f"asked {(now - self.asked_at).total_seconds():.0f} s ago, waiting for the answer"
        elif self.error:
            state, text = "error", f"answered with an error {age:.0f} s ago: {self.error}"
        else:
            state, text = "answered", f"answered {age:.0f} s ago"
        return {
            "kind": self.kind,
            "state": state,
            "text": text,
            "asked_at": self.asked_at.isoformat() if self.asked_at else None,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "unanswered_since": self.unanswered_since.isoformat() if self.unanswered_since else None,
            "answer_age_seconds": round(age, 1) if age is not None else None,
            "no_answer_seconds": round(silent, 1) if silent is not None else None,
            "message": self.message,
            "data": self.data,
            "error": self.error,
        }

    @classmethod
    def describe_all(cls, now: dt.datetime | None = None) -> dict[str, dict[str, Any]]:
        """Every kind, asked or not (one query)."""
        now = now or timezone.now()
        found = {probe.kind: probe for probe in cls.objects.all()}
        return {kind: found.get(kind, cls(kind=kind)).describe(now) for kind, _ in cls.KINDS}


class CatchUp(models.Model):
    """A feed's first-start catch-up on its stream's retained history (mistersmith.live.catchup):
    the range it reads, how far it has applied, and when it finished. Any worker reads it to say
    "catching up: N of M"; an unfinished one is resumed by the next bridge."""

    consumer = models.CharField(max_length=100, unique=True)
    stream = models.CharField(max_length=64)
    first_sequence = models.BigIntegerField()
    target_sequence = models.BigIntegerField(help_text="The stream's last sequence when the catch-up began.")
    applied_sequence = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.consumer}: {self.done} of {self.total}"

    @property
    def total(self) -> int:
        """Messages in the range (by sequence: a sequence the stream dropped meanwhile still counts)."""
        return max(0, self.target_sequence - self.first_sequence + 1)

    @property
    def done(self) -> int:
        return min(self.total, max(0, self.applied_sequence - self.first_sequence + 1))


class SavedView(models.Model):
    """A person's named state of a live page: the page's path and its query string (filters, replay
    position, selected node: docs/live.md "State in the URL"), opened again from the page's Views menu.

    Each user sees and changes only their own; a name is unique per user and page, so saving under
    a name kept already replaces that view's query. Not part of state snapshots
    (operations/snapshots/tables.py): a person's settings point at this installation's users.
    """

    in_snapshots = False

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    page = models.CharField(max_length=200, help_text="The live page's path, e.g. /admin/events/.")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True, help_text="The query string, without '?'.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["page", "name"]
        constraints = [models.UniqueConstraint(fields=["user", "page", "name"], name="saved_view_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.page})"

    @property
    def url(self) -> str:
        """Where the view opens: its page with its query."""
        return f"{self.page}?{self.query}" if self.query else self.page
