"""The rows of the state verification matrix and the report they make (see :mod:`.verify`)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from django.utils import timezone

Status = Literal["ok", "degraded", "failed"]
OK: Status = "ok"
DEGRADED: Status = "degraded"
FAILED: Status = "failed"
SEVERITY = {OK: 0, DEGRADED: 1, FAILED: 2}

# The eight stateful components of the seed's matrix, in the order a report lists them.
COMPONENTS = (
    "agent_state",
    "supervision_db",
    "discovery_store",
    "jetstream",
    "sessions",
    "db_pool",
    "hive_mind",
    "browser",
)

PROBE_TIMEOUT = 1.0  # seconds: the database probe, a NATS connection, each WebSocket step


@dataclass(frozen=True)
class Row:
    """One check's answer; ``hint`` says what to do when the status is not ok."""

    component: str
    check: str
    expected: str
    found: str
    status: Status
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def judged(
    component: str, check: str, expected: str, found: str, *, bad: bool, hint: str = "", status: Status = FAILED
) -> Row:
    """A row that is ok unless ``bad`` (then ``status``); the hint is kept only with a problem."""
    return Row(component, check, expected, found, status if bad else OK, hint if bad else "")


@dataclass
class Report:
    rows: list[Row]
    checked_at: dt.datetime = field(default_factory=timezone.now)
    duration_ms: float = 0.0

    @property
    def status(self) -> Status:
        """The worst row's status (ok for an empty report)."""
        return max((row.status for row in self.rows), key=SEVERITY.__getitem__, default=OK)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((OK, DEGRADED, FAILED), 0)
        for row in self.rows:
            counts[row.status] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "counts": self.counts,
            "rows": [row.as_dict() for row in self.rows],
        }


def error_text(error: BaseException) -> str:
    """An exception as one short line: its type and its message's first line."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:240]


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else many or word + 's'}"


def listing(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def safe_url(url: str) -> str:
    """A URL without user, password or query (a report is shown to every staff user)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
