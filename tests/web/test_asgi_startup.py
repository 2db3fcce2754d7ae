"""The ASGI app's startup freezes what it loaded out of the cyclic collector's walks (mistersmith.asgi).

Run in a process of its own: freezing the test process would change every later test's collector.
The server's lifespan is driven as uvicorn drives it (startup, then shutdown).
"""

from __future__ import annotations

from tests.services import run_python

LIFESPAN = """
import asyncio, gc, os
os.environ.pop("MISTERSMITH_BRIDGE_IN_PROCESS", None)
from mistersmith.asgi import application

async def start_and_stop():
    before = gc.get_freeze_count()
    messages = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        messages.put_nowait({"type": kind})
    sent = []

    async def send(message):
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            print(f"frozen_before={before} frozen_at_startup={gc.get_freeze_count()}")

    await application({"type": "lifespan"}, messages.get, send)
    print(" ".join(sent))

asyncio.run(start_and_stop())
"""


def test_startup_freezes_the_loaded_objects_and_the_lifespan_completes():
    output = run_python("-c", LIFESPAN, env={"DJANGO_SETTINGS_MODULE": "mistersmith.settings"}, timeout=120)
    frozen, completed = output.strip().splitlines()
    before, at_startup = (int(part.split("=")[1]) for part in frozen.split())
    assert before == 0 and at_startup > 50_000, frozen  # Django, the admin and the console: far more
    assert completed == "lifespan.startup.complete lifespan.shutdown.complete"
