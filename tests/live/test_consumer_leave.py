"""However a live socket's consumer ends, it gives back what it holds (issue 16, item 1).

uvicorn raises ClientDisconnected from ``send`` when a frame goes to a client that has just left,
and swallows it once it has ended the consumer: the consumer never read its disconnect, so it
stayed counted, held its user's slot and stayed in its groups. Through the real ASGI application
(login, origin check, routing) with uvicorn's exception, on the in-memory layer.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.layers import get_channel_layer
from uvicorn.protocols.utils import ClientDisconnected

from mistersmith.asgi import application
from mistersmith.live.consumer import OPEN_SOCKETS
from mistersmith.live.metrics import LIVE_CONSUMERS, LIVE_SOCKETS
from tests.live.test_live_socket import make_user

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_consumer_ended_by_a_frame_to_a_departed_client_leaves_its_groups_and_slot(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    user, cookie = await make_user(perms=("view_event_log",))
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []
    gone = asyncio.Event()

    async def send(message: dict) -> None:
        if gone.is_set() and message["type"] == "websocket.send":
            raise ClientDisconnected()
        sent.append(message)

    async def sent_one(condition) -> None:
        async with asyncio.timeout(5):
            while not any(condition(message) for message in sent):
                await asyncio.sleep(0.01)

    scope = {
        "type": "websocket",
        "path": "/ws/live/",
        "raw_path": b"/ws/live/",
        "query_string": b"",
        "headers": [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sockets_before, consumers_before = LIVE_SOCKETS._value.get(), LIVE_CONSUMERS._value.get()
    task = asyncio.create_task(application(scope, inbox.get, send))
    await inbox.put({"type": "websocket.connect"})
    await sent_one(lambda message: message["type"] == "websocket.accept")
    await inbox.put({"type": "websocket.receive", "text": json.dumps({"subscribe": ["events"]})})
    await sent_one(lambda message: "subscribed" in message.get("text", ""))
    layer = get_channel_layer()
    assert OPEN_SOCKETS[user.pk] == 1 and len(layer.groups["live.events"]) == 1
    assert LIVE_SOCKETS._value.get() == sockets_before + 1

    gone.set()  # the client leaves; its disconnect is not read before the next frame
    await layer.group_send("live.events", {"type": "frame", "topic": "events", "sequence": 1, "text": "{}"})
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(task, 5)

    assert user.pk not in OPEN_SOCKETS
    assert not layer.groups.get("live.events") and not layer.groups.get("live.status")
    assert LIVE_SOCKETS._value.get() == sockets_before
    assert LIVE_CONSUMERS._value.get() == consumers_before
