"""Links from an agent id to the agent: its live page and its place in the supervision tree.

Agent ids appear in pages that do not own agents (discoveries, the event log, anomalies, dead
letters, the dashboard's events); each makes them links through here, so the rule is written once:
the live page for a user who may view agents (``agents.view_agent``), the tree for one who may
also view supervision nodes; a user who may not follow a link gets the bare id, never a dead link.
URLs are ``reverse()``d by name (agent_pages in agents/page_urls.py), so no app is imported.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

User = AbstractBaseUser | AnonymousUser

VIEW_AGENT = "agents.view_agent"
VIEW_NODE = "supervision.view_supervisionnode"
PLACEHOLDER = uuid.UUID(int=0)
# agent.<uuid>.events (AGENT_EVENTS) and supervision.agent.<uuid>.… (SUPERVISION_EVENTS)
AGENT_SUBJECT = re.compile(
    r"^(?:supervision\.)?agent\.([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\."
)


def reverse_with_id(name: str, key: uuid.UUID | str) -> str:
    """``reverse(name, args=[key])`` for a URL with one UUID in it, reversed once per name (and
    script prefix) rather than once per call: a changelist's link column would otherwise pay a
    ``reverse()`` on each of its rows (about 0.15 ms each)."""
    before, after = _url_around_id(name, get_script_prefix())
    return f"{before}{key}{after}"


@lru_cache(maxsize=64)
def _url_around_id(name: str, script_prefix: str) -> tuple[str, str]:
    before, after = reverse(name, args=[PLACEHOLDER]).split(str(PLACEHOLDER))
    return before, after


def agent_id_in_subject(subject: str) -> str | None:
    """The agent a subject is about, or None."""
    found = AGENT_SUBJECT.match(subject or "")
    return found.group(1).lower() if found else None


def agent_link_templates(user: User) -> dict[str, Any] | None:
    """The link templates a page's script fills with an agent id (live.js agentLinks): None for a
    user who may not view agents; ``tree`` None for one who may not view nodes."""
    if not user.has_perm(VIEW_AGENT):
        return None
    return {
        "placeholder": str(PLACEHOLDER),
        "detail": reverse("agent_pages:detail", args=[PLACEHOLDER]),
        "tree": reverse("agent_pages:tree", args=[PLACEHOLDER]) if user.has_perm(VIEW_NODE) else None,
    }


def agent_links_html(user: User, agent_id: Any) -> SafeString | str:
    """An agent id as HTML: the id linking to its live page, then "tree" (each as the user may)."""
    if agent_id in (None, ""):
        return "—"
    text = str(agent_id)
    try:
        agent_id = uuid.UUID(text)
    except ValueError:
        return text  # not an agent id (a discovery's agent may be named otherwise): no link
    if not user.has_perm(VIEW_AGENT):
        return text
    detail = reverse("agent_pages:detail", args=[agent_id])
    if not user.has_perm(VIEW_NODE):
        return format_html('<a href="{}" class="agent-link">{}</a>', detail, text)
    tree = reverse("agent_pages:tree", args=[agent_id])
    return format_html(
        '<a href="{}" class="agent-link">{}</a> '
        '<a href="{}" class="agent-tree-link" title="Its place in the supervision tree">(tree)</a>',
        detail,
        text,
        tree,
    )


def agent_column(user: User, read: Callable[[Any], Any], title: str = "agent") -> Callable[[Any], Any]:
    """A changelist column (for ``get_list_display``) showing ``read(row)``'s agent id as links."""

    def column(row: Any) -> SafeString | str:
        return agent_links_html(user, read(row))

    column.short_description = title  # type: ignore[attr-defined]
    return column


class AgentLinksMixin:
    """A ModelAdmin whose ``agent_id`` column becomes links to the agent (per the viewing user)."""

    agent_id_field = "agent_id"

    def get_list_display(self, request: Any) -> list[Any]:
        columns = list(super().get_list_display(request))  # type: ignore[misc]
        if self.agent_id_field in columns:
            field = self.agent_id_field
            column = agent_column(request.user, lambda row: getattr(row, field), "agent id")
            columns[columns.index(field)] = column
        return columns
