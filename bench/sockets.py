"""Opening a console's live socket as a browser tab does: the one opener of the socket benches and
the real-server socket tests."""

from __future__ import annotations

import asyncio
import json

SUBSCRIBE_TIMEOUT = 60.0


async def subscribed_socket(base_url: str, cookie: str, topics: list[str], **options: object) -> object:
    """A socket on ``base_url``'s ``/ws/live/`` (``http://host:port``), with ``cookie`` and the page's
    own origin, subscribed to ``topics``. ``options`` go to websockets' ``connect`` (``ping_interval``,
    ``max_size``, ...). Raises RuntimeError when the subscription is refused (the socket is closed)."""
    from websockets.asyncio.client import connect

    socket = await connect(
        base_url.replace("http://", "ws://") + "/ws/live/",
        origin=base_url,
        additional_headers={"Cookie": cookie},
        **options,
    )
    await socket.send(json.dumps({"subscribe": topics}))
    async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
        while "subscribed" not in (reply := json.loads(await socket.recv())):
            pass  # a frame that came before the reply
    if reply["subscribed"] != sorted(topics):
        await socket.close()
        raise RuntimeError(f"subscription refused: {reply}")
    return socket
