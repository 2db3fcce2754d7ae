"""The Redis channel layer as settings.py configures it keeps an idle receive waiting.

redis-py 8 gives every read a 5 s socket timeout by default, the length of channels-redis'
blocking pop: an idle socket's receive raised redis' TimeoutError after 5 s and the server closed
the WebSocket (1011), every 5 s while no event came. The settings give the layer's connections a
longer read timeout. Checked in a process of its own, so that the settings are built with REDIS_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.mistersmith.test_scale_out import redis_url
from tests.services import BASE_DIR

pytestmark = pytest.mark.slow

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


def test_an_idle_receive_on_the_redis_layer_outlasts_the_blocking_pop():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mistersmith.settings",
        "REDIS_URL": redis_url(),
        "CHANNEL_LAYER_PREFIX": f"test-idle-{uuid.uuid4().hex[:8]}",
    }
    result = subprocess.run(
        [sys.executable, "-c", IDLE_RECEIVE],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "still waiting", result.stdout + result.stderr[-2000:]
