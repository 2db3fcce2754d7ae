"""Issue 12, item 1 through a real server (uvicorn serving mistersmith.asgi in a process of its own) and
a real WebSocket client: an open live socket ends with its session. A logout or a password change made
over HTTP on that server, and user changes made by another process (this one, through the shared Redis
channel layer, as another worker or a shell would), close the socket or drop its topics within seconds;
the timer closes a socket whose session row was deleted in the database, which nothing signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid

import pytest
import requests
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client

from bench.sockets import subscribed_socket
from mistersmith.live.socket_session import SESSION_ENDED
from tests.services import ConsoleProcess

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "real-pass-123"
DEADLINE = 10.0  # seconds; the server's timer runs every 30 s, so a close within this came from a signal


@pytest.fixture
def shared_layer(settings) -> dict[str, str]:
    """This process and the server on one Redis channel layer of the test's own prefix."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    prefix = f"test-session-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url], "prefix": prefix}}
    }
    return {"REDIS_URL": url, "CHANNEL_LAYER_PREFIX": prefix}


@pytest.fixture
def console_with(shared_layer):
    servers = []

    def start(check_seconds: str) -> ConsoleProcess:
        server = ConsoleProcess(
            MISTERSMITH_BRIDGE_IN_PROCESS="0", LIVE_SESSION_CHECK_SECONDS=check_seconds, **shared_layer
        )
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def staff_user(*perms: str):
    user = get_user_model().objects.create_user(f"ses-{uuid.uuid4().hex[:8]}", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def new_session(user) -> str:
    """A logged-in session of ``user`` (its key), as a second browser would hold."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Browser:
    """HTTP to the real server with one session's cookie, CSRF token included in every POST."""

    def __init__(self, console: ConsoleProcess, session_key: str) -> None:
        self.console = console
        self.http = requests.Session()
        self.http.cookies.set(settings.SESSION_COOKIE_NAME, session_key)

    def post(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.http.get(f"{self.console.url}/admin/password_change/", timeout=10)
        assert page.status_code == 200, page.status_code
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return self.http.post(
            f"{self.console.url}{path}", data={**data, "csrfmiddlewaretoken": token}, timeout=10, allow_redirects=False
        )


async def open_socket(console: ConsoleProcess, session_key: str, topics: list[str]):
    return await subscribed_socket(console.url, f"{settings.SESSION_COOKIE_NAME}={session_key}", topics)


async def closed_with(socket, reason_part: str) -> None:
    """The page is told why, then the socket closes with SESSION_ENDED, both within the deadline."""
    from websockets.exceptions import ConnectionClosed

    told = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
    assert reason_part in told["error"], told
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), DEADLINE)
    assert closed.value.rcvd.code == SESSION_ENDED and closed.value.rcvd.reason == told["error"]


async def still_open(socket, topics: list[str]) -> None:
    await socket.send(json.dumps({"subscribe": ["system"]}))
    assert json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))["subscribed"] == sorted([*topics, "system"])


def test_logout_password_change_deactivation_staff_and_permissions_end_a_real_servers_sockets(console_with):
    console = console_with("30")
    logout_user, password_user, inactive_user, staff_removed, perm_user, bystander = (
        staff_user("view_agent") for _ in range(6)
    )
    perm_user.user_permissions.add(Permission.objects.get(codename="view_discovery"))
    logout_session = new_session(logout_user)
    password_sessions = new_session(password_user), new_session(password_user)
    keys = {user: new_session(user) for user in (inactive_user, staff_removed, perm_user, bystander)}

    async def scenario() -> None:
        # A logout from another client holding the same session, over HTTP on the server.
        socket = await open_socket(console, logout_session, ["agents"])
        response = await asyncio.to_thread(Browser(console, logout_session).post, "/admin/logout/", {})
        assert response.status_code == 200
        await closed_with(socket, "logged out")

        # A password change in a second session ends the first session's socket. The changing session
        # goes on under a new key (update_session_auth_hash cycles it), so its old socket ends too, and
        # the page's reconnect with the new cookie is accepted.
        first, second = [await open_socket(console, key, ["agents"]) for key in password_sessions]
        new_password = "Another-pass-9876"
        changer = Browser(console, password_sessions[1])
        response = await asyncio.to_thread(
            changer.post,
            "/admin/password_change/",
            {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
        )
        assert response.status_code == 302, response.text[:500]
        await closed_with(first, "password changed")
        await closed_with(second, "log in again")  # "password changed" or "session has ended": a race of the two
        renewed = response.cookies[settings.SESSION_COOKIE_NAME]  # the Set-Cookie of the new key
        assert renewed != password_sessions[1]
        reconnected = await open_socket(console, renewed, ["agents"])
        await still_open(reconnected, ["agents"])
        await reconnected.close()

        # Changes saved by another process reach the server's sockets through the channel layer.
        socket = await open_socket(console, keys[inactive_user], ["agents"])
        inactive_user.is_active = False
        await sync_to_async(inactive_user.save)()
        await closed_with(socket, "deactivated")

        socket = await open_socket(console, keys[staff_removed], ["agents"])
        staff_removed.is_staff = False
        await sync_to_async(staff_removed.save)()
        await closed_with(socket, "no longer staff")

        socket = await open_socket(console, keys[perm_user], ["agents", "discoveries"])
        view_agent = await Permission.objects.aget(codename="view_agent")
        await sync_to_async(perm_user.user_permissions.remove)(view_agent)
        told = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
        assert told == {"left": ["agents"], "reason": "You may no longer see these topics."}
        await socket.send(json.dumps({"subscribe": ["agents"]}))
        assert json.loads(await asyncio.wait_for(socket.recv(), DEADLINE)) == {
            "subscribed": ["discoveries"],
            "refused": ["agents"],
        }

        bystander_socket = await open_socket(console, keys[bystander], ["agents"])
        await still_open(bystander_socket, ["agents"])  # nobody else's socket was touched
        await socket.close()
        await bystander_socket.close()

    asyncio.run(scenario())


def test_the_timer_closes_a_real_socket_whose_session_row_was_deleted(console_with):
    console = console_with("0.5")
    key = new_session(staff_user("view_agent"))

    async def scenario() -> None:
        socket = await open_socket(console, key, ["agents"])
        await sync_to_async(Session.objects.filter(session_key=key).delete)()  # straight to the table: no signal
        await closed_with(socket, "session has ended")

    asyncio.run(scenario())
