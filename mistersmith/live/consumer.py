"""The one WebSocket of the live pages: it forwards the bridge's frames for the topics a user may see.

A page connects, then subscribes: ``{"subscribe": ["agents", "supervision"]}``. Each topic is
checked against the user's Django permissions; a topic the user may not see is refused by
name and never joined. Anonymous and non-staff users are refused at the handshake.

The discoveries topic takes the runtime's subscription filter too:
``{"subscribe": ["discoveries"], "filters": {"discoveries": {"types": "Pattern", "min_confidence": "0.5"}}}``
(the same fields as the ``/discoveries`` query string); only matching discoveries are sent.

Bounds, so that one user cannot grow a process without limit: a socket joins at most
``LIVE_TOPICS_PER_SOCKET`` distinct topics over its whole life (counted over every subscribe message,
refused names included), and a user holds at most ``settings.LIVE_SOCKETS_PER_USER`` sockets in one
server process; the next is accepted only to be told why and closed with ``TOO_MANY`` (4429).

The socket lives no longer than its session, its user and their permissions: see
:mod:`mistersmith.live.socket_session` (closed with ``SESSION_ENDED``, 4401; topics no longer allowed are left).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import Counter
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from mistersmith.live.frames import STATUS_GROUP, group_name
from mistersmith.live.metrics import LIVE_CONSUMERS, LIVE_SOCKETS
from mistersmith.live.registry import TOPIC_FILTERS, TopicFilter
from mistersmith.live.socket_session import SessionBoundSocket

logger = logging.getLogger(__name__)

GOING_AWAY = 1001  # WebSocket close code: the server is stopping (RFC 6455)
REFUSED = 4403  # WebSocket close code: authenticated but not allowed (like HTTP 403)
TOO_MANY = 4429  # WebSocket close code: this user holds too many sockets already (like HTTP 429)
LIVE_TOPICS_PER_SOCKET = 50
AGENT_TOPIC = re.compile(r"agent\.([0-9a-f-]{36})")  # used with fullmatch: "$" would pass a trailing newline
OPEN_SOCKETS: Counter[int | None] = Counter()  # user id -> open live sockets in this process
RUNNING: dict[LiveConsumer, asyncio.Task] = {}  # accepted live sockets of this process -> their consumer's task
TOPIC_PERMISSIONS = {
    "agents": "agents.view_agent",
    "supervision": "supervision.view_supervisionnode",
    "discoveries": "agents.view_discovery",
    "events": "mistersmith.view_event_log",
    "system": "agents.view_agent",  # the runtime's health and pool reports (the dashboard)
}


def topic_permission(topic: str) -> str | None:
    """The permission a topic needs, or None for a topic that does not exist."""
    if topic in TOPIC_PERMISSIONS:
        return TOPIC_PERMISSIONS[topic]
    match = AGENT_TOPIC.fullmatch(topic)
    if match:
        try:
            uuid.UUID(match.group(1))
        except ValueError:
            return None
        return "agents.view_agent"
    return None


class LiveConsumer(SessionBoundSocket, AsyncJsonWebsocketConsumer):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Counted until the task really ends (mistersmith_live_consumers_running): a socket closed
        by its client but whose task never finished was invisible to the open-sockets gauge. However
        the consumer ends, it leaves its groups and gives back its slot (``_leave``).

        Sends go through one lock and stop at the close: a stop closes sockets from outside the
        consumer's task (``close_live_sockets``) while frames are still being sent, and uvicorn
        refuses any message after a ``websocket.close``."""
        LIVE_CONSUMERS.inc()
        self.close_sent = False
        self.left = False
        self.joined: set[str] = set()  # every group this socket is in: refreshed, and left at the end
        self.refresher: asyncio.Task | None = None
        lock = asyncio.Lock()

        async def send_until_closed(message: dict[str, Any]) -> None:
            async with lock:
                if self.close_sent:
                    return
                self.close_sent = message["type"] == "websocket.close"
                await send(message)

        try:
            await super().__call__(scope, receive, send_until_closed)
        finally:
            RUNNING.pop(self, None)
            try:
                await self._leave()
            except Exception:
                name = getattr(self, "channel_name", "-")
                logger.warning("live socket %s: leaving its groups failed", name, exc_info=True)
            finally:
                LIVE_CONSUMERS.dec()

    async def join(self, group: str) -> None:
        """Join a channel-layer group for this socket's life: the group is refreshed within the
        layer's group expiry and left when the socket ends (join every group through here)."""
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.add(group)

    async def leave(self, group: str) -> None:
        """Leave one group before the socket ends (a topic the user may no longer see): no longer refreshed."""
        self.joined.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def _refresh_groups(self) -> None:
        """Joins this socket's groups again well within the layer's group expiry: a member that
        is not refreshed (its process was killed, it never left) drops out of its groups at the
        expiry instead of being sent every frame, and logged over capacity, for a day."""
        while True:
            await asyncio.sleep(settings.LIVE_GROUP_REFRESH_SECONDS)
            try:
                for group in list(self.joined):
                    await self.channel_layer.group_add(group, self.channel_name)
            except Exception:  # the layer is away for now: the next round tries again
                logger.warning("live socket %s: refreshing its groups failed", self.channel_name, exc_info=True)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close(code=REFUSED)
            return
        self.topics: set[str] = set()
        self.requested: set[str] = set()  # every topic name asked for, joined or refused
        self.filters: dict[str, TopicFilter] = {}  # per topic, the socket's own (registry.TOPIC_FILTERS)
        if OPEN_SOCKETS[user.pk] >= settings.LIVE_SOCKETS_PER_USER:
            await self.accept()  # accepted only so that the page can read why it is closed
            message = f"At most {settings.LIVE_SOCKETS_PER_USER} live sockets per user; close another page first."
            await self.send_json({"error": message})
            await self.close(code=TOO_MANY, reason=message)
            return
        OPEN_SOCKETS[user.pk] += 1
        self.user_slot = (user.pk,)  # a holder, not the id: an unsaved user's pk is None (verify_state's probe)
        await self.join(STATUS_GROUP)
        await self.accept()
        LIVE_SOCKETS.inc()
        self.counted = True
        RUNNING[self] = asyncio.current_task()
        self.refresher = asyncio.create_task(self._refresh_groups())
        await self.bind_session()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        wanted = content.get("subscribe") if isinstance(content, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(t, str) for t in wanted):
            await self.send_json({"error": 'Send {"subscribe": ["topic", ...]}.'})
            return
        if len(self.requested | set(wanted)) > LIVE_TOPICS_PER_SOCKET:
            await self.send_json(
                {"error": f"At most {LIVE_TOPICS_PER_SOCKET} topics per socket in all; open a new page for others."}
            )
            return
        filters = content.get("filters") or {}
        try:
            if not isinstance(filters, dict) or not all(isinstance(filters.get(t, {}), dict) for t in TOPIC_FILTERS):
                shapes = ", ".join(f'"{topic}": {{field: text}}' for topic in TOPIC_FILTERS)
                raise ValueError(f'"filters" is {{{shapes}}}.')
            for topic, make in TOPIC_FILTERS.items():
                if topic in filters:
                    self.filters[topic] = make({key: str(value) for key, value in filters[topic].items()})
        except ValueError as error:
            await self.send_json({"error": str(error)})
            return
        self.requested.update(wanted)
        allowed, refused = [], []
        for topic in wanted:
            permission = topic_permission(topic)
            if permission is not None and await self._has_perm(permission):
                allowed.append(topic)
            else:
                refused.append(topic)
        for topic in allowed:
            if topic not in self.topics:
                await self.join(group_name(topic))
                self.topics.add(topic)
        await self.send_json({"subscribed": sorted(self.topics), "refused": refused})

    @database_sync_to_async
    def _has_perm(self, permission: str) -> bool:
        return self.scope["user"].has_perm(permission)  # the user as re-read for this message

    def permission_for(self, topic: str) -> str | None:
        return topic_permission(topic)

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        """Give back, once, what the socket holds: its count, its user's slot, its groups. From
        disconnect(), or from __call__ when the consumer ends without one: a frame sent just after
        the client left makes uvicorn raise ClientDisconnected, which ends the consumer before it
        reads the disconnect (and which uvicorn then swallows): such a socket stayed counted, held
        its user's slot and stayed in its groups, sent every frame until the group expiry."""
        if self.left:
            return
        self.left = True
        if self.refresher is not None:  # first, so that it cannot join a group again after the discards below
            self.refresher.cancel()
            await asyncio.wait({self.refresher}, timeout=1)
        if getattr(self, "counted", False):
            LIVE_SOCKETS.dec()
            self.counted = False
        if (slot := getattr(self, "user_slot", None)) is not None:
            self.user_slot = None
            (user_id,) = slot
            OPEN_SOCKETS[user_id] -= 1
            if OPEN_SOCKETS[user_id] <= 0:
                del OPEN_SOCKETS[user_id]
        if not hasattr(self, "channel_name"):  # ended before it had a channel: no group to leave
            return
        for group in sorted(self.joined):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined.clear()

    async def stop(self) -> None:
        """Close with 1001 (going away) for a server stop: the page reconnects, to another worker
        behind a load balancer. Frames still arriving are not sent after the close."""
        await self.close(code=GOING_AWAY)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Frames use no database: they skip Channels' close_old_connections() before each handler, a
        hop through its one sync thread per frame per socket (the largest cost at 50 sockets)."""
        if message.get("type") == "frame":
            await self.frame(message)
        else:
            await super().dispatch(message)

    async def bridge_status(self, message: dict[str, Any]) -> None:
        """The bridge lost or regained the runtime's streams (see frames.send_bridge_status)."""
        await self.send_json({"bridge": {"connected": bool(message.get("connected"))}})

    async def frame(self, message: dict[str, Any]) -> None:
        """A frame from the bridge, passed on as it is (the page escapes every value it shows): as the
        text the bridge encoded once for every socket, unless this socket filters it."""
        topic = message["topic"]
        topic_filter = self.filters.get(topic)
        if topic_filter is not None:
            events = [event for event in message["events"] if topic_filter.matches(event)]
            if events:
                await self.send_json({"topic": topic, "sequence": message.get("sequence"), "events": events})
            return
        await self.send(text_data=message["text"])


async def close_live_sockets(timeout: float) -> tuple[int, int]:
    """Close every live socket of this process with 1001 and wait, at most ``timeout`` s, for their
    consumers to end (the client answers the close, the consumer leaves its groups). Returns
    (ended, still running): what is still running is left to the server's own shutdown."""
    running = dict(RUNNING)
    if not running:
        return 0, 0
    closers = [asyncio.create_task(consumer.stop()) for consumer in running]
    done, pending = await asyncio.wait(set(running.values()), timeout=max(timeout, 0.01))
    for closer in closers:
        if not closer.done():  # a client that reads nothing: its socket is ended by the server
            closer.cancel()
    await asyncio.gather(*closers, return_exceptions=True)
    return len(done), len(pending)
