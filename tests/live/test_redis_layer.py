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

import uuid

import pytest

from tests.live.test_scale_out import redis_url
from tests.services import run_python

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
        "DJANGO_SETTINGS_MODULE": "mistersmith.settings",
        "REDIS_URL": redis_url(),
        "CHANNEL_LAYER_PREFIX": f"test-layer-{uuid.uuid4().hex[:8]}",
    }
    return run_python("-c", code, env=env, timeout=60).strip()


def test_an_idle_receive_on_the_redis_layer_outlasts_the_blocking_pop():
    assert run_with_the_redis_layer(IDLE_RECEIVE) == "still waiting"


def test_three_hundred_sockets_joining_and_leaving_at_once_get_a_connection_each():
    assert run_with_the_redis_layer(BURST) == "done"


FAN_OUT = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def fan_out():
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(200)]
    for channel in channels:
        await layer.group_add("fan", channel)
    received = {channel: [] for channel in channels}

    async def consume(channel):
        while len(received[channel]) < 20:
            received[channel].append((await layer.receive(channel))["n"])

    consumers = [asyncio.create_task(consume(channel)) for channel in channels]
    await asyncio.sleep(0)  # every consumer waits on its receive
    waiting = len(asyncio.all_tasks()) - 1 - len(consumers)  # tasks besides main and the consumers
    for n in range(20):
        await layer.group_send("fan", {"type": "frame", "n": n})
    await asyncio.wait_for(asyncio.gather(*consumers), 30)
    in_order = all(numbers == list(range(20)) for numbers in received.values())
    print(f"readers={waiting} in_order={in_order}")

asyncio.run(fan_out())
"""

CANCELLED_RECEIVE = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def cancelled():
    layer = get_channel_layer()
    leaving, staying = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", leaving)
    await layer.group_add("g", staying)
    try:
        await asyncio.wait_for(layer.receive(leaving), 0.2)  # a socket that closes while waiting
    except TimeoutError:
        pass
    await layer.group_send("g", {"type": "frame", "n": 1})
    message = await asyncio.wait_for(layer.receive(staying), 10)
    print(f"staying got {message['n']}")

asyncio.run(cancelled())
"""

REDIS_GONE = """
import asyncio, django
django.setup()
from django.conf import settings
from mistersmith.live.redis_layer import LiveRedisChannelLayer

async def gone():
    config = dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])
    host = dict(config["hosts"][0], address="redis://127.0.0.1:1/0")  # nothing listens there
    layer = LiveRedisChannelLayer(**dict(config, hosts=[host]))
    channels = [await layer.new_channel() for _ in range(3)]
    results = await asyncio.wait_for(
        asyncio.gather(*(layer.receive(channel) for channel in channels), return_exceptions=True), 30
    )
    print(" ".join(type(result).__name__ for result in results))

asyncio.run(gone())
"""


def test_one_reader_fans_a_group_message_out_to_every_local_channel_in_order():
    """200 channels of one process wait on the layer: one reader task reads for all of them (the
    channels-redis receive made two tasks per waiting receive), and each channel gets every message
    of the group once, in order."""
    assert run_with_the_redis_layer(FAN_OUT) == "readers=1 in_order=True"


def test_a_receive_cancelled_while_waiting_leaves_the_others_their_messages():
    assert run_with_the_redis_layer(CANCELLED_RECEIVE) == "staying got 1"


def test_a_failed_read_is_raised_in_every_waiting_receive_instead_of_hanging_them():
    assert run_with_the_redis_layer(REDIS_GONE) == "ConnectionError ConnectionError ConnectionError"
