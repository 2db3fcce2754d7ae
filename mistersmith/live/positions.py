"""The stream positions a live page's snapshot reflects (the page drops frames at or below them;
see static/mistersmith/live.js), and the bridge's consumer prefix they are stored under. Access
and the live pages' admin context are in mistersmith/web/access.py."""

from __future__ import annotations

import os

DEFAULT_CONSUMER_PREFIX = "mistersmith-console"


def bridge_consumer_prefix() -> str:
    """The durable-consumer prefix of this installation's bridge (``MISTERSMITH_BRIDGE_PREFIX``)."""
    return os.environ.get("MISTERSMITH_BRIDGE_PREFIX", DEFAULT_CONSUMER_PREFIX)


def stream_positions() -> dict[str, int]:
    """Per stream, the last sequence the projections reflect (committed with them, so a snapshot
    read in the same transaction is consistent with it)."""
    from mistersmith.live.models import BridgePosition
    from mistersmith.live.registry import POSITIONS

    prefix = bridge_consumer_prefix()
    positions = dict(BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").values_list("stream", "sequence"))
    for stream, newest in POSITIONS.items():  # the feeds that keep no position row (discoveries)
        sequence = newest()
        if sequence is not None:
            positions[stream] = sequence
    return positions
