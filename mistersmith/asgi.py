"""ASGI entry point: HTTP through Django, WebSockets through Channels (login and origin checked).

With ``MISTERSMITH_BRIDGE_IN_PROCESS=1`` (set by ``manage.py run``, the single-process install)
the bridge runs as a task on the server's own event loop, started and stopped by the ASGI
lifespan, so its frames reach the in-memory channel layer of the same loop. Several workers
run ``manage.py bridge`` on its own instead, with the Redis channel layer.
"""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mistersmith.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from mistersmith.routing import websocket_urlpatterns  # noqa: E402
from mistersmith.security import SiteOriginValidator  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def _bridge_until(stop: asyncio.Event) -> None:
    from mistersmith.bridge import run_bridge_supervised

    await run_bridge_supervised(stop)


async def lifespan(receive, send) -> None:
    stop, task = asyncio.Event(), None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("MISTERSMITH_BRIDGE_IN_PROCESS") == "1":
                task = asyncio.create_task(_bridge_until(stop))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            stop.set()
            if task is not None:
                await asyncio.wait_for(task, timeout=10)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await router(scope, receive, send)
