"""Silent agents: active agents the console has not heard from for too long.

An agent is *active* in Running, Idle or Processing (agents.lifecycle.ACTIVE_STATES). It is *silent*
when its newest heartbeat, or (never having sent one) its last state change, is older than
``MISTERSMITH_SILENT_AGENT_SECONDS`` (Django setting or environment; default 300 s, the pool's idle
timeout). The runtime publishes no Heartbeat today (CONTRACTS.md §2), so until it does an agent
that sits in one state that long counts as silent too: nothing says it is still alive.

One definition, read by the dashboard's "needs attention" panel, the live agents list (its flag
and its ``?silent=1`` filter) and verify_state's heartbeat row. The filter is the index
``agents_silence_idx`` (on ``coalesce(last_heartbeat, state_changed_at)`` for active agents only),
so counting the silent agents reads only them, however many agents there are.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.lifecycle import ACTIVE_STATES
from mistersmith.jetstream.settings_number import number_setting

DEFAULT_SILENT_SECONDS = 300.0
SETTING = "MISTERSMITH_SILENT_AGENT_SECONDS"
# The expression agents_silence_idx indexes: the newest sign of life the console has.
LAST_HEARD = Coalesce("last_heartbeat", "state_changed_at")


def silent_seconds() -> int:
    """The threshold in seconds (at least 1)."""
    return int(number_setting(SETTING, default=DEFAULT_SILENT_SECONDS, minimum=1.0))


def quiet_since(now: dt.datetime | None = None) -> dt.datetime:
    """Agents last heard from before this moment are silent."""
    return (now or timezone.now()) - dt.timedelta(seconds=silent_seconds())


def silent_filter(since: dt.datetime | None = None) -> Q:
    """The agents that are silent now (or were at ``since``' threshold): for ``Agent.objects.filter``
    after ``.alias(last_heard=LAST_HEARD)``."""
    return Q(status__in=sorted(ACTIVE_STATES), last_heard__lt=since or quiet_since())


def is_silent(
    status: str, last_heartbeat: dt.datetime | None, state_changed_at: dt.datetime | None, since: dt.datetime
) -> bool:
    """The same rule for one agent already read (a row of the list)."""
    heard = last_heartbeat or state_changed_at
    return status in ACTIVE_STATES and heard is not None and heard < since
