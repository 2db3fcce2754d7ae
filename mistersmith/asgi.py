"""ASGI entry point: HTTP through Django, WebSockets through Channels (login and origin checked).

With ``MISTERSMITH_BRIDGE_IN_PROCESS=1`` (set by ``manage.py run``, the single-process install)
the bridge runs as a task on the server's own event loop, started and stopped by the ASGI
lifespan, so its frames reach the in-memory channel layer of the same loop. Several workers
run ``manage.py bridge`` on its own instead, with the Redis channel layer.
"""

import asyncio
import gc
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mistersmith.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from mistersmith.live.routing import websocket_urlpatterns  # noqa: E402
from mistersmith.web.concurrency import BoundedHttp  # noqa: E402
from mistersmith.web.security import SiteOriginValidator  # noqa: E402

logger = logging.getLogger(__name__)

router = ProtocolTypeRouter(
    {
        "http": BoundedHttp(django_asgi_app, settings.HTTP_CONCURRENCY, settings.HTTP_QUEUE_SECONDS),
        "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def _bridge_until(stop: asyncio.Event) -> None:
    from mistersmith.live.bridge import run_bridge_supervised

    await run_bridge_supervised(stop)


def freeze_startup_objects() -> int:
    """Move every object alive after startup (modules, settings, URL patterns, templates: well over
    a hundred thousand, none of them ever garbage) out of the collector's reach; returns how many.

    The cyclic collector's full collections walk every tracked object. With the console's startup
    objects among them, each one paused the event loop long enough to be the tail of live delivery:
    500 sockets on two Redis workers at 1,000 events/s, p99 152 -> 112 ms and max 337 -> 182 ms
    (bench/load_sockets.py, docs/deploy.md). A collection first, so that no garbage is frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def lifespan(receive, send) -> None:
    stop, task = asyncio.Event(), None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            freeze_startup_objects()
            if os.environ.get("MISTERSMITH_BRIDGE_IN_PROCESS") == "1":
                task = asyncio.create_task(_bridge_until(stop))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            stop.set()
            if task is not None:
                await _stop_bridge(task)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _stop_bridge(task: asyncio.Task) -> None:
    """Let the bridge finish its batch and leave, within its share of the stop budget
    (mistersmith/live/server.py); cancelled past it, so that a stop stays bounded."""
    from mistersmith.live.server import bridge_stop_seconds

    done, _ = await asyncio.wait({task}, timeout=bridge_stop_seconds())
    if not done:
        logger.warning("the bridge did not stop in %.1f s: cancelled", bridge_stop_seconds())
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    elif not task.cancelled() and task.exception() is not None:
        logger.error("the bridge ended with an error", exc_info=task.exception())


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await router(scope, receive, send)
