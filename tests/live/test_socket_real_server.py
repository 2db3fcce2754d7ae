"""Issue 12, items 2, 11 and 12 through a real server (uvicorn serving mistersmith.asgi in a process
of its own, as ``make run`` does): what a browser on another port or scheme of the same host gets,
the per-user socket cap's close code and reason, and a topic ending in a newline."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from mistersmith.live.consumer import TOO_MANY
from tests.services import ConsoleProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def console():
    server = ConsoleProcess(MISTERSMITH_BRIDGE_IN_PROCESS="0", LIVE_SOCKETS_PER_USER="2").start()
    yield server
    server.stop()


def staff_cookie() -> str:
    user = get_user_model().objects.create_user(f"real-{uuid.uuid4().hex[:8]}", password="real-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_a_real_server_checks_whole_origins_caps_sockets_and_refuses_newline_topics(console):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    cookie = staff_cookie()
    url = console.url.replace("http://", "ws://") + "/ws/live/"
    other_port = f"http://127.0.0.1:{console.port + 1}"

    async def opened(origin: str):
        return await connect(url, origin=origin, additional_headers={"Cookie": cookie})

    async def scenario() -> None:
        for foreign in (other_port, f"https://127.0.0.1:{console.port}", "http://127.0.0.1"):
            with pytest.raises(InvalidStatus) as refused:
                await opened(foreign)
            assert refused.value.response.status_code == 403, foreign

        first, second = await opened(console.url), await opened(console.url)
        crafted = f"agent.{uuid.uuid4()}\n"
        await first.send(json.dumps({"subscribe": [crafted, "agents"]}))
        assert json.loads(await first.recv()) == {"subscribed": ["agents"], "refused": [crafted]}

        third = await opened(console.url)
        assert json.loads(await third.recv()) == {"error": "At most 2 live sockets per user; close another page first."}
        with pytest.raises(ConnectionClosed) as closed:
            await third.recv()
        assert closed.value.rcvd.code == TOO_MANY and "At most 2 live sockets" in closed.value.rcvd.reason

        await first.close()
        await second.close()

    asyncio.run(scenario())
