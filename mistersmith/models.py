"""The bridge's own state: how far each consumer has applied, and what it could not read."""

from __future__ import annotations

from django.db import models

DEAD_LETTER_KEEP = 1000
EXCERPT_LENGTH = 500


def excerpt(data: bytes) -> str:
    """The start of a payload as text, whatever its bytes (invalid UTF-8 and NUL become U+FFFD:
    PostgreSQL refuses NUL in text, and a dead letter holding one could not be recorded)."""
    return data[:EXCERPT_LENGTH].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class BridgePosition(models.Model):
    """The last stream sequence a consumer applied, committed with the changes it made.

    A message redelivered after a crash (applied and committed, but not yet acked) has a sequence
    at or below this and is skipped: replays change nothing twice.
    """

    consumer = models.CharField(max_length=100, unique=True)
    stream = models.CharField(max_length=64)
    sequence = models.BigIntegerField(default=0)
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
