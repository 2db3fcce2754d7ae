"""Frames: the events of one bridge batch, per topic, as one channel-layer group message.

The bridge adds an event per applied change; after each batch is committed, each topic with
events gets one ``frame`` message holding all of them and the highest stream sequence they
reflect. Each event carries its own ``stream`` and ``sequence`` (a topic may mix streams), so a
page drops exactly the events its snapshot already reflects (see
``mistersmith/live/static/mistersmith/live.js``). A burst of a thousand events on a topic becomes a
few frames, not a thousand messages per browser.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from channels.layers import get_channel_layer

TOPIC = re.compile(r"^[a-z][a-z0-9_.-]{0,80}$")


def group_name(topic: str) -> str:
    """Channel-layer group names allow only ASCII letters, digits, hyphens, underscores and periods."""
    if not TOPIC.fullmatch(topic):
        raise ValueError(f"not a topic: {topic!r}")
    return f"live.{topic}"


class SharedEvents(list):
    """A frame's events, shared by every receiver's copy of the frame instead of copied for each.

    The in-memory channel layer deep-copies a message for every channel of a group: a 500-event
    frame to 50 sockets was 50 deep copies, the server's largest cost (bench/live_latency.py).
    Nothing changes a frame's events once it is sent (a consumer that filters builds a new
    list), so the copies may share them. The Redis layer serializes a message once per process
    anyway; a list subclass serializes as a list there and in JSON.
    """

    def __deepcopy__(self, memo: dict) -> SharedEvents:
        return self


class FrameBuffer:
    """Collects events per topic between two flushes (one instance per bridge, one event loop)."""

    def __init__(self, sent_through: int | None = None) -> None:
        self._events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._sequence: dict[str, int] = {}
        # The highest stream sequence whose frames the feed had sent before this buffer's batch: a
        # feed that keeps a position records it with the batch's commit as its framed position.
        self.sent_through = sent_through

    def add(self, topic: str, event: dict[str, Any], sequence: int | None = None, stream: str | None = None) -> None:
        if stream is not None and sequence is not None:
            event = {**event, "stream": stream, "sequence": sequence}
        self._events[topic].append(event)
        if sequence is not None:
            self._sequence[topic] = max(sequence, self._sequence.get(topic, 0))

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())

    def take(self) -> list[dict[str, Any]]:
        """The frames of this tick (and an empty buffer for the next)."""
        frames = [
            {"type": "frame", "topic": topic, "events": SharedEvents(events), "sequence": self._sequence.get(topic)}
            for topic, events in self._events.items()
        ]
        self._events.clear()
        self._sequence.clear()
        return frames


class NoFrames(FrameBuffer):
    """A buffer that keeps nothing: history applied by a first-start catch-up reaches no page (nobody
    watched it happen; a page loads its snapshot), so its events are not even built."""

    def add(self, topic: str, event: dict[str, Any], sequence: int | None = None, stream: str | None = None) -> None:
        return None


def socket_text(frame: dict[str, Any]) -> str:
    """The JSON text a socket sends for a frame, made once per frame in ``send_frames`` (as ``"text"``):
    a socket that forwards the frame unfiltered can send it as it is instead of encoding the same
    events again for each socket (50 sockets on a topic: 50 encodings of every frame)."""
    body = {"topic": frame["topic"], "sequence": frame.get("sequence"), "events": frame["events"]}
    return json.dumps(body, default=str)


# Topics whose sockets may filter a frame's events: their frames keep the events as well as the text.
FILTERED_TOPICS = frozenset({"discoveries"})


async def send_frames(frames: list[dict[str, Any]]) -> None:
    """Each frame goes to its topic's group as its socket text only: a frame's events again beside
    the text would double what the channel layer copies per socket (with Redis: serializes, stores
    and reads back once per socket). Frames of a filtered topic keep their events too."""
    layer = get_channel_layer()
    for frame in frames:
        message = {"type": "frame", "topic": frame["topic"], "sequence": frame["sequence"], "text": socket_text(frame)}
        if frame["topic"] in FILTERED_TOPICS:
            message["events"] = frame["events"]
        await layer.group_send(group_name(frame["topic"]), message)


STATUS_GROUP = "live.status"  # every socket is in it: the bridge's own state, for the pages' badge


async def send_bridge_status(connected: bool) -> None:
    """Tell every page whether the bridge has the runtime's streams: while NATS is away no event can
    arrive, so a page shows "reconnecting" instead of a "live" that is silently stale; when it is
    back, pages reload their snapshot and the bridge's durable consumers deliver what was missed."""
    await get_channel_layer().group_send(STATUS_GROUP, {"type": "bridge.status", "connected": connected})
