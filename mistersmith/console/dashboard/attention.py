"""The dashboard's "needs attention" panel: what an operator should look at now, each with a count
and links to the filtered lists that show exactly what was counted.

Items (each only for a user who may view its rows, and shown only when its count is not zero):

- ``silent_agents``: active agents unheard of past the threshold (agents/silence.py);
- ``error_agents``: agents that entered Error within the window (and how many are in Error now);
- ``failure_rate``: failures within the window against the window before, when rising;
- ``failed_nodes``: supervision nodes whose status is failed;
- ``escalations``: failures escalated to the parent within the last hour;
- ``escalation_forecast``: nodes one failure from escalating (their restart budget's last slot
  used or about to be, escalate_on_limit set: supervision/budgets.py), counted with every node's
  budget in one set-based statement;
- ``dead_letters``: messages the bridge refused within the last day;
- ``stale_feeds``: bridge feeds behind their stream past MISTERSMITH_STALE_SECONDS (NATS; the
  snapshot adds them, see panels.py).

Every count is bounded: a range of an index (agents_silence_idx, agents_status_changed_idx,
supervision_failures_time_idx, supervision_failures_escalated_time_idx, supervision_nodes_status_idx,
the dead letters' received_at) read
at most :data:`COUNT_CAP` rows deep, so the panel costs the same at 100,000 nodes and 1,000,000
failures. Links carry absolute times, so a list opened later still shows the rows counted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from agents.lifecycle import AgentState
from agents.models import Agent
from agents.silence import LAST_HEARD, quiet_since, silent_filter, silent_seconds
from mistersmith.jetstream.settings_number import number_setting
from mistersmith.live.models import DeadLetter
from supervision.budgets import ESCALATING_IDS_QUERY
from supervision.models import NodeStatus, SupervisionFailure, SupervisionNode
from supervision.views import moments

User = AbstractBaseUser | AnonymousUser

COUNT_CAP = 1_000  # counted this far, then "1,000+": enough to say "look", and the worst case stays cheap
DEFAULT_WINDOW_MINUTES = 10.0
ESCALATION_WINDOW = dt.timedelta(hours=1)
DEAD_LETTER_WINDOW = dt.timedelta(days=1)
RISE_FACTOR = 2  # rising: at least this many times the previous window's failures ...
RISE_MINIMUM = 5  # ... and at least this many (a rise from 0 to 1 is no alarm)

VIEW_AGENT = "agents.view_agent"
VIEW_NODE = "supervision.view_supervisionnode"
VIEW_FAILURE = "supervision.view_supervisionfailure"
VIEW_DEAD_LETTER = "mistersmith.view_deadletter"


def window_minutes() -> int:
    """``MISTERSMITH_ATTENTION_WINDOW_MINUTES`` (default 10): the window of the failure rate and
    of agents newly in Error; the rate compares it with the window before it."""
    return int(number_setting("MISTERSMITH_ATTENTION_WINDOW_MINUTES", default=DEFAULT_WINDOW_MINUTES, minimum=1.0))


def capped_counts(counted: dict[str, QuerySet]) -> dict[str, tuple[int, bool]]:
    """Each queryset's row count read at most COUNT_CAP + 1 deep, and whether it stopped there: all
    in one statement (one scalar subquery each), so the panel costs one round trip."""
    if not counted:
        return {}
    parts, params = [], []
    for rows in counted.values():
        sql, rows_params = rows.order_by().values("pk")[: COUNT_CAP + 1].query.sql_with_params()
        parts.append(f"(SELECT count(*) FROM ({sql}) AS capped)")
        params.extend(rows_params)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        found = cursor.fetchone()
    return {name: (min(n, COUNT_CAP), n > COUNT_CAP) for name, n in zip(counted, found, strict=True)}


def may_view(user: User, app_model: str) -> bool:
    """The admin's rule for a changelist: the view or the change permission."""
    app, model = app_model.split(".")
    return user.has_perm(f"{app}.view_{model}") or user.has_perm(f"{app}.change_{model}")


def _link(label: str, url_name: str, query: dict[str, str] | None = None) -> dict[str, str]:
    url = reverse(url_name)
    return {"label": label, "url": f"{url}?{urlencode(query)}" if query else url}


def _item(key: str, count: int, capped: bool, text: str, links: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"key": key, "count": count, "capped": capped, "text": text, "links": links, **extra}


def _plural(count: int, capped: bool, word: str, many: str | None = None) -> str:
    shown = f"{count:,}{'+' if capped else ''}"
    return f"{shown} {word if count == 1 and not capped else many or word + 's'}"


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _queries(user: User, now: dt.datetime, window: dt.timedelta) -> dict[str, QuerySet]:
    """What is counted, for this user: the rows each item would show."""
    queries: dict[str, QuerySet] = {}
    if user.has_perm(VIEW_AGENT):
        queries["silent_agents"] = Agent.objects.alias(last_heard=LAST_HEARD).filter(silent_filter(quiet_since(now)))
        error = Agent.objects.filter(status=AgentState.ERROR)
        queries["error_agents"] = error.filter(state_changed_at__gte=now - window)
        queries["error_total"] = error
    if user.has_perm(VIEW_FAILURE):
        failures = SupervisionFailure.objects.all()
        queries["failure_rate"] = failures.filter(occurred_at__gte=now - window, occurred_at__lt=now)
        queries["failures_before"] = failures.filter(occurred_at__gte=now - 2 * window, occurred_at__lt=now - window)
        queries["escalations"] = failures.filter(
            occurred_at__gte=now - ESCALATION_WINDOW, occurred_at__lt=now, escalated_to_parent=True
        )
    if user.has_perm(VIEW_NODE):
        queries["failed_nodes"] = SupervisionNode.objects.filter(status=NodeStatus.FAILED)
        if may_view(user, "supervision.supervisionpolicy"):  # the forecast is the policies' figures
            escalating = RawSQL(ESCALATING_IDS_QUERY, [])  # noqa: S611 (a constant: no input in it)
            queries["escalation_forecast"] = SupervisionNode.objects.filter(pk__in=escalating)
    if may_view(user, "mistersmith.deadletter"):
        queries["dead_letters"] = DeadLetter.objects.filter(received_at__gte=now - DEAD_LETTER_WINDOW)
    return queries


def _items(user: User, counts: dict[str, tuple[int, bool]], now: dt.datetime, window: dt.timedelta) -> list[dict]:
    """The items whose count calls for someone, worst first, each with its links."""
    items = []
    minutes = int(window.total_seconds() // 60)
    count, capped = counts.get("silent_agents", (0, False))
    if count:
        text = f"{_plural(count, capped, 'active agent')} silent for more than {silent_seconds()} s"
        link = _link("Show them", "agent_pages:list", {"silent": "1"})
        items.append(_item("silent_agents", count, capped, text, [link]))
    count, capped = counts.get("error_agents", (0, False))
    if count:
        total, total_capped = counts["error_total"]
        text = (
            f"{_plural(count, capped, 'agent')} entered Error in the last {minutes} min "
            f"({total:,}{'+' if total_capped else ''} in Error now)"
        )
        link = _link("Agents in Error", "agent_pages:list", {"state": AgentState.ERROR})
        items.append(_item("error_agents", count, capped, text, [link], total=total))
    count, capped = counts.get("failure_rate", (0, False))
    previous, _ = counts.get("failures_before", (0, False))
    if count >= RISE_MINIMUM and count >= RISE_FACTOR * previous:
        text = (
            f"Failures rising: {_plural(count, capped, 'failure')} in the last {minutes} min, "
            f"{previous:,} in the {minutes} min before"
        )
        query = {"occurred_at__gte": _iso(now - window), "occurred_at__lt": _iso(now)}
        link = _link("Show them", "admin:supervision_supervisionfailure_changelist", query)
        links = [link, *_tree_before(user, now - window, now)]
        items.append(_item("failure_rate", count, capped, text, links, previous=previous))
    count, capped = counts.get("failed_nodes", (0, False))
    if count:
        links = [_link("In the tree", "supervision:tree", {"status": NodeStatus.FAILED})]
        if may_view(user, "supervision.supervisionnode"):
            query = {"status__exact": NodeStatus.FAILED}
            links.insert(0, _link("Show them", "admin:supervision_supervisionnode_changelist", query))
        text = f"{_plural(count, capped, 'supervision node')} failed"
        items.append(_item("failed_nodes", count, capped, text, links))
    count, capped = counts.get("escalations", (0, False))
    if count:
        text = f"{_plural(count, capped, 'failure')} escalated to the parent in the last hour"
        query = {
            "escalated_to_parent__exact": "1",
            "occurred_at__gte": _iso(now - ESCALATION_WINDOW),
            "occurred_at__lt": _iso(now),
        }
        link = _link("Show them", "admin:supervision_supervisionfailure_changelist", query)
        items.append(
            _item("escalations", count, capped, text, [link, *_tree_before(user, now - ESCALATION_WINDOW, now)])
        )
    count, capped = counts.get("escalation_forecast", (0, False))
    if count:
        text = f"{_plural(count, capped, 'supervision node')} one failure from escalating to the parent"
        link = _link("In the tree", "supervision:tree", {"budget": "escalating"})
        items.append(_item("escalation_forecast", count, capped, text, [link]))
    count, capped = counts.get("dead_letters", (0, False))
    if count:
        text = f"{_plural(count, capped, 'message')} refused by the bridge (dead letters) in the last day"
        query = {"received_at__gte": _iso(now - DEAD_LETTER_WINDOW)}
        link = _link("Show them", "admin:mistersmith_deadletter_changelist", query)
        items.append(_item("dead_letters", count, capped, text, [link]))
    return items


def _tree_before(user: User, since: dt.datetime, now: dt.datetime) -> list[dict[str, str]]:
    """The tree 5 minutes before a window of failures began, with what changed since (the past
    tree's diff, supervision/views/moments.py), for whom may view the tree."""
    if not may_view(user, "supervision.supervisionnode"):
        return []
    return [
        {
            "label": "The tree 5 minutes before",
            "url": moments.past_tree_url(since - moments.BEFORE_FAILURE, compare=now),
        }
    ]


def stale_feed_items(freshness: dict[str, Any]) -> list[dict[str, Any]]:
    """The feeds the freshness figures (dashboard/freshness.py) call stale."""
    stale = [feed for feed in freshness.get("feeds", []) if feed.get("stale")]
    if not stale:
        return []
    names = ", ".join(f"{feed['feed']} ({feed.get('text', 'stale')})" for feed in stale)
    text = f"{_plural(len(stale), False, 'live feed')} stale: {names}"
    return [_item("stale_feeds", len(stale), False, text, [_link("Check the state", "verify_state:page")])]


def attention(user: User, now: dt.datetime | None = None) -> dict[str, Any]:
    """The database's items this user may see, worst first, counted in one statement."""
    now = (now or timezone.now()).replace(microsecond=0)  # the links' times are whole seconds
    window = dt.timedelta(minutes=window_minutes())
    counts = capped_counts(_queries(user, now, window))
    return {
        "items": _items(user, counts, now, window),
        "checked_at": now.isoformat(),
        "window_minutes": int(window.total_seconds() // 60),
    }
