"""The Redis channel layer as settings.py configures it: idle receives wait, bursts don't fail.

redis-py 8 gives every read a 5 s socket timeout by default, the length of channels-redis'
blocking pop: an idle socket's receive raised redis' TimeoutError after 5 s and the server closed
the WebSocket (1011), every 5 s while no event came. And its pool refuses a 101st connection
(MaxConnectionsError) instead of waiting: 250 sockets closing at once (bench/load_sockets.py) each
needed one for its group_discard. The settings give the layer's connections no read timeout (the
blocking pop ends by itself; a socket timeout also put every send under Python 3.11's
cancellation-swallowing asyncio.wait_for, see tests/live/test_socket_lifecycle.py) and a
larger pool. Checked in a process of its own, so that the settings are built with REDIS_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.live.test_scale_out import redis_url
from tests.services import BASE_DIR

pytestmark = pytest.mark.slow

BURST = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def burst():
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(300)]
    await asyncio.gather(*(layer.group_add("burst", channel) for channel in channels))
    await asyncio.gather(*(layer.group_discard("burst", channel) for channel in channels))
    print("done")

asyncio.run(burst())
"""

IDLE_RECEIVE = """
import asyncio, django, redis
django.setup()
from channels.layers import get_channel_layer

async def idle():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    try:
        await asyncio.wait_for(layer.receive(channel), 8)  # past the 5 s blocking pop and its retry
    except TimeoutError:
        print("still waiting")
    except redis.RedisError as error:
        print(f"redis error: {error!r}")

asyncio.run(idle())
"""


def run_with_the_redis_layer(code: str) -> str:
    """Run ``code`` in a Python process whose settings have REDIS_URL; its output."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mistersmith.settings",
        "REDIS_URL": redis_url(),
        "CHANNEL_LAYER_PREFIX": f"test-layer-{uuid.uuid4().hex[:8]}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_an_idle_receive_on_the_redis_layer_outlasts_the_blocking_pop():
    assert run_with_the_redis_layer(IDLE_RECEIVE) == "still waiting"


def test_three_hundred_sockets_joining_and_leaving_at_once_get_a_connection_each():
    assert run_with_the_redis_layer(BURST) == "done"
