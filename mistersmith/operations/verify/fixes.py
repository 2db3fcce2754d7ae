"""Where the fix of a verify_state row is: a link from its hint to the page that shows the rows in
question (or does the fix), for the page and its JSON. Checks stay free of requests and URLs;
this maps (component, check) to a page by URL name, offered only to a user who may open it.

The page lists the failed rows first, then the degraded ones, then the rest (:func:`worst_first`):
what needs someone is at the top, each row in its component's order otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import reverse

from mistersmith.operations.verify.matrix import OK, SEVERITY, Report, Row

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class Fix:
    label: str
    url_name: str
    permissions: tuple[str, ...]  # any one of them lets the user follow the link
    query: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        url = reverse(self.url_name)
        return f"{url}?{urlencode(self.query)}" if self.query else url


def _admin(model: str, label: str, *query: tuple[str, str]) -> Fix:
    app, name = model.split(".")
    return Fix(label, f"admin:{app}_{name}_changelist", (f"{app}.view_{name}", f"{app}.change_{name}"), query)


AGENTS = "agents.view_agent"
# (component, check) -> the fix; a check named with a prefix ("freshness agents") by its first word.
FIXES: dict[tuple[str, str], Fix] = {
    ("agent_state", "lifecycle states"): _admin("agents.agent", "Agents in the admin"),
    ("agent_state", "heartbeats"): Fix("Show the silent agents", "agent_pages:list", (AGENTS,), (("silent", "1"),)),
    ("agent_state", "instance statuses"): _admin("agents.agentinstance", "Agent instances in the admin"),
    ("agent_state", "anomalies"): _admin("agents.agentanomaly", "Agent anomalies in the admin"),
    ("sessions", "live sessions have a process"): _admin(
        "agents.interactivesession", "Live sessions in the admin", ("state__in", "Starting,Ready,Processing")
    ),
    ("sessions", "sessions of live agents"): _admin(
        "agents.interactivesession", "Live sessions in the admin", ("state__in", "Starting,Ready,Processing")
    ),
    ("discovery_store", "capacity"): Fix("Discoveries", "discovery_pages:page", ("agents.view_discovery",)),
    ("jetstream", "freshness"): Fix("Streams on the dashboard", "dashboard:page", ("mistersmith.view_event_log",)),
    ("jetstream", "consumer"): Fix("Streams on the dashboard", "dashboard:page", ("mistersmith.view_event_log",)),
    ("jetstream", "stream"): Fix("Streams on the dashboard", "dashboard:page", ("mistersmith.view_event_log",)),
    ("jetstream", "catch-up"): Fix("Streams on the dashboard", "dashboard:page", ("mistersmith.view_event_log",)),
}


def fix_for(row: Row, user: User) -> dict[str, str] | None:
    """The link of a row that is not ok, if there is one and this user may follow it."""
    if row.status == OK:
        return None
    fix = FIXES.get((row.component, row.check)) or FIXES.get((row.component, row.check.split(" ")[0]))
    if fix is None or not any(user.has_perm(permission) for permission in fix.permissions):
        return None
    return {"label": fix.label, "url": fix.url()}


def worst_first(rows: list[Row]) -> list[Row]:
    """Failed, then degraded, then ok; in the report's order within each (a stable sort)."""
    return sorted(rows, key=lambda row: -SEVERITY[row.status])


def page_rows(report: Report, user: User) -> list[dict[str, Any]]:
    """The rows as the page shows them: worst first, each with its fix link (or None)."""
    return [{**row.as_dict(), "fix": fix_for(row, user)} for row in worst_first(report.rows)]
