"""The console's record of who changed a node, and the switches a snapshot restore needs.

The history of node states (supervision_node_history) is written by database triggers (migration
0006), so the runtime's own SQL is recorded like the console's edits. What a trigger cannot know
is which console user made an edit: :func:`record_as` tells it, for the rest of the current
transaction, through the ``mistersmith.actor`` setting (transaction-local, so a pooled connection
never carries it into another request).
"""

from __future__ import annotations

from typing import Any

from django.db import connection

ACTOR_SETTING = "mistersmith.actor"
RECORDING_SETTING = "mistersmith.history"


def record_as(user: Any) -> None:
    """Name ``user`` as the author of the node and policy changes of the current transaction."""
    name = getattr(user, "get_username", lambda: "")() or ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [ACTOR_SETTING, name[:150]])


def pause_recording() -> None:
    """No history rows for the rest of this transaction: a snapshot restore loads the history
    the snapshot carries instead of recording its own COPY as a million changes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'off', true)", [RECORDING_SETTING])


def record_missing() -> int:
    """An open version ("known" now) for each node without one: after a restore of a snapshot
    that carried no history. Returns how many were added."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT supervision_history_seed()")
        return cursor.fetchone()[0]
