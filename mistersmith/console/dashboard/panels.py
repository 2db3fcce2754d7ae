"""Which dashboard panel a user may see, and the snapshot of the panels asked for.

A panel is shown only to a user with the view permission of its data (rates: of failures or of
restarts, each series on its own). The snapshot is built from *parts*, one per panel, so the page
can re-read just the part an event made stale (agent counts after state changes, stream health
every few seconds) through the same endpoint and code as the first load.

The database parts are read in one transaction, with the stream positions they reflect; it is
REPEATABLE READ when the snapshot opens the transaction itself, so every statement sees the same
moment. The NATS parts come after; once NATS has failed, the remaining NATS parts report that
failure instead of waiting for it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.utils import timezone

from mistersmith.console.dashboard import attention, runtime, selectors
from mistersmith.console.dashboard.freshness import page_freshness
from mistersmith.jetstream.client import NatsUnavailable
from mistersmith.live.positions import stream_positions

User = AbstractBaseUser | AnonymousUser

VIEW_AGENT = "agents.view_agent"
VIEW_NODE = "supervision.view_supervisionnode"
VIEW_FAILURE = "supervision.view_supervisionfailure"
VIEW_RESTART = "supervision.view_supervisionrestart"
VIEW_EVENT_LOG = "mistersmith.view_event_log"
VIEW_DEAD_LETTER = attention.VIEW_DEAD_LETTER

# part -> any one of these permissions shows it.
PART_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # first on the page: what needs someone now (each item then follows its own permission)
    "attention": (VIEW_AGENT, VIEW_NODE, VIEW_FAILURE, VIEW_DEAD_LETTER, VIEW_EVENT_LOG),
    "agents": (VIEW_AGENT,),
    "nodes": (VIEW_NODE,),
    "rates": (VIEW_FAILURE, VIEW_RESTART),
    "pool": (VIEW_AGENT,),  # the runtime's pool arrives on the "system" topic, which needs view_agent
    "streams": (VIEW_EVENT_LOG,),  # the streams' own figures: the event log's right
    "events": (VIEW_EVENT_LOG, VIEW_AGENT, VIEW_NODE),
}
PARTS = tuple(PART_PERMISSIONS)
DATABASE_PARTS = ("attention", "agents", "nodes", "rates")

# Live topics (mistersmith/live/consumer.py) and the permission each needs there.
TOPIC_PERMISSIONS = {"agents": VIEW_AGENT, "supervision": VIEW_NODE, "system": VIEW_AGENT, "events": VIEW_EVENT_LOG}


def visible_parts(user: User) -> list[str]:
    """The panels this user may see, in page order."""
    return [part for part, permissions in PART_PERMISSIONS.items() if any(user.has_perm(p) for p in permissions)]


def live_topics(user: User) -> list[str]:
    """The topics the page subscribes to: those this user may receive (a refused topic would only
    be named back as refused). With the event log's topic, the latest events come from it instead
    of from summaries of the agents and supervision topics."""
    return [topic for topic, permission in TOPIC_PERMISSIONS.items() if user.has_perm(permission)]


def parse_parts(value: str | None, user: User) -> list[str]:
    """The parts named in ``?parts=a,b`` (none: every part this user may see).

    Raises ValueError for an unknown part and PermissionError for a part the user may not see.
    """
    visible = visible_parts(user)
    if not value:
        return visible
    wanted = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in PARTS]
    if unknown:
        raise ValueError(f"Unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}.")
    refused = [name for name in wanted if name not in visible]
    if refused:
        raise PermissionError(f"You may not see the {refused[0]} panel.")
    return [name for name in PARTS if name in wanted]


class NatsReads:
    """Runs NATS reads for one snapshot; after the first failure the others answer at once."""

    def __init__(self) -> None:
        self.error: str | None = None

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.error is None:
            try:
                return function(*args, **kwargs)
            except NatsUnavailable as error:
                self.error = str(error)
        return {"error": f"NATS is unavailable: {self.error}"}


def _database_parts(user: User, parts: Iterable[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"positions": stream_positions()}
    if "attention" in parts:
        data["attention"] = attention.attention(user)
    if "agents" in parts:
        data["agents"] = {"counts": selectors.agent_state_counts()}
    if "nodes" in parts:
        data["nodes"] = {"counts": selectors.node_status_counts()}
    if "rates" in parts:
        data["rates"] = selectors.failure_and_restart_rates(
            failures=user.has_perm(VIEW_FAILURE), restarts=user.has_perm(VIEW_RESTART)
        )
    if "pool" in parts:
        data["pool"] = {"runtime": selectors.runtime_answers()}
    return data


def _event_streams(user: User) -> list[str]:
    """The streams a user's latest events come from: all of them with the event log permission,
    else those the agents and supervision topics are made of."""
    if user.has_perm(VIEW_EVENT_LOG):
        return ["AGENT_EVENTS", "SYSTEM_EVENTS", "SUPERVISION_EVENTS", "DISCOVERIES"]
    streams = []
    if user.has_perm(VIEW_AGENT):
        streams.append("AGENT_EVENTS")
    if user.has_perm(VIEW_NODE):
        streams += ["SYSTEM_EVENTS", "SUPERVISION_EVENTS"]  # restart requests and answers, supervision events
    return streams


def build_snapshot(user: User, parts: list[str]) -> dict[str, Any]:
    """The asked-for parts (already checked against the user's permissions) and the positions."""
    opens_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if opens_transaction:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        data = _database_parts(user, parts)
    data["generated_at"] = timezone.now().isoformat()
    data["parts"] = parts
    nats = NatsReads()
    if "attention" in parts:
        freshness = nats.read(page_freshness)
        data["attention"]["items"] += attention.stale_feed_items(freshness)
        data["attention"]["freshness_error"] = freshness.get("error")
    if "pool" in parts:
        data["pool"]["console"] = selectors.console_pool_stats()
        # A system.health message, should any publisher send one (the runtime itself does not).
        data["pool"]["health_report"] = nats.read(runtime.runtime_health)
    if "streams" in parts:
        streams = nats.read(runtime.stream_health)
        data["streams"] = streams if isinstance(streams, dict) else {"streams": streams}
    if "events" in parts:
        raw = user.has_perm(VIEW_EVENT_LOG)
        data["events"] = {"raw": raw, **nats.read(runtime.latest_events, raw=raw, streams=_event_streams(user))}
    return data
