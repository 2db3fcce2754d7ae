"""Issue 12, item 1, in process (channels' WebsocketCommunicator on the real ASGI application): a
live socket ends with its session and re-checks its user and topics on every message, on signals and
on a timer. The same through uvicorn and across processes: test_socket_session_real_server.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session
from django.test import Client

from mistersmith.live.socket_session import SESSION_ENDED, check_session, session_group, user_group
from tests.live.test_live_socket import make_user, socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def own_channel_layer(settings):
    """A layer of this process only: the machine's Redis is shared with other runs, whose broadcasts
    (the bridge's status) would reach these sockets between the messages the tests wait for."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def opened(cookie: bytes, topics: list[str]):
    communicator = socket(cookie)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"subscribe": topics})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["subscribed"] == sorted(topics), reply
    return communicator


async def closed_with(communicator, reason_part: str) -> None:
    """The page is told why, then the socket is closed with SESSION_ENDED."""
    told = await communicator.receive_json_from(timeout=10)
    assert reason_part in told["error"], told
    close = await communicator.receive_output(timeout=10)
    assert close == {"type": "websocket.close", "code": SESSION_ENDED, "reason": told["error"]}


def session_key(cookie: bytes) -> str:
    return cookie.decode().split("=", 1)[1]


async def test_logout_of_the_same_session_closes_the_socket_and_not_another_sessions():
    user, _ = await make_user(perms=("view_agent",))
    browser, other = Client(), Client()
    await sync_to_async(browser.force_login)(user)
    await sync_to_async(other.force_login)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    other_cookie = f"{settings.SESSION_COOKIE_NAME}={other.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    communicator, survivor = await opened(cookie, ["agents"]), await opened(other_cookie, ["agents"])

    response = await sync_to_async(browser.post)("/admin/logout/")
    assert response.status_code == 200
    await closed_with(communicator, "logged out")
    await survivor.send_json_to({"subscribe": ["system"]})  # the user's other session is untouched
    assert (await survivor.receive_json_from(timeout=5))["subscribed"] == ["agents", "system"]
    await survivor.disconnect()


async def test_every_message_rechecks_even_a_change_no_signal_reports():
    user, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    model = type(user)
    await sync_to_async(model.objects.filter(pk=user.pk).update)(is_active=False)  # update(): no signal
    assert await communicator.receive_nothing(timeout=0.3)  # the timer (30 s) has not run
    await communicator.send_json_to({"subscribe": ["system"]})
    await closed_with(communicator, "deactivated")


async def test_a_removed_permission_leaves_the_topic_and_a_new_subscribe_is_refused():
    user, cookie = await make_user(perms=("view_agent", "view_discovery"))
    communicator = await opened(cookie, ["agents", "discoveries"])
    view_agent = await Permission.objects.aget(codename="view_agent")
    await sync_to_async(user.user_permissions.remove)(view_agent)
    assert await communicator.receive_json_from(timeout=10) == {
        "left": ["agents"],
        "reason": "You may no longer see these topics.",
    }
    await communicator.send_json_to({"subscribe": ["agents"]})
    assert await communicator.receive_json_from(timeout=5) == {"subscribed": ["discoveries"], "refused": ["agents"]}
    await communicator.disconnect()


@sync_to_async
def group_with_view_agent(user) -> Group:
    group = Group.objects.create(name=f"g-{user.username}")
    group.permissions.add(Permission.objects.get(codename="view_agent"))
    user.groups.add(group)
    return group


async def test_a_groups_lost_permission_reaches_every_socket_of_its_users():
    first, first_cookie = await make_user()
    second, second_cookie = await make_user()
    group = await group_with_view_agent(first)
    await sync_to_async(second.groups.add)(group)
    sockets = [await opened(first_cookie, ["agents"]), await opened(second_cookie, ["agents"])]
    await sync_to_async(group.permissions.clear)()
    for communicator in sockets:
        told = await communicator.receive_json_from(timeout=10)
        assert told["left"] == ["agents"], told
        await communicator.disconnect()


async def test_leaving_a_group_or_its_deletion_reaches_its_users():
    user, cookie = await make_user()
    group = await group_with_view_agent(user)
    communicator = await opened(cookie, ["agents"])
    await sync_to_async(group.delete)()
    assert (await communicator.receive_json_from(timeout=10))["left"] == ["agents"]
    await communicator.disconnect()


async def test_removing_staff_and_deleting_the_user_close_the_socket():
    user, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    user.is_staff = False
    await sync_to_async(user.save)()
    await closed_with(communicator, "no longer staff")

    user, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    await sync_to_async(user.delete)()
    await closed_with(communicator, "deleted or deactivated")


async def test_a_password_change_closes_the_other_sessions_sockets():
    user, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    user.set_password("a-new-pass-456")
    await sync_to_async(user.save)()
    await closed_with(communicator, "password changed")


async def test_the_timer_closes_a_socket_whose_session_row_was_deleted(settings):
    settings.LIVE_SESSION_CHECK_SECONDS = 0.2
    _, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    await sync_to_async(Session.objects.filter(session_key=session_key(cookie)).delete)()  # no signal
    started = time.monotonic()
    await closed_with(communicator, "session has ended")
    assert time.monotonic() - started < 5


async def test_a_login_saving_last_login_sends_no_check(settings):
    """Each login saves last_login: that alone must not make every socket of the user query."""
    user, cookie = await make_user(perms=("view_agent",))
    communicator = await opened(cookie, ["agents"])
    await sync_to_async(Client().force_login)(user)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


def test_the_check_is_four_queries_whatever_the_topics(django_assert_max_num_queries):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("four-q", password="x-pass-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=("view_agent", "view_discovery")))
    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    permissions = {"agents.view_agent", "agents.view_discovery", "supervision.view_supervisionnode"}
    with django_assert_max_num_queries(4):
        verdict = check_session(key, user.pk, permissions)
    assert verdict.ended is None
    assert verdict.allowed == {
        "agents.view_agent": True,
        "agents.view_discovery": True,
        "supervision.view_supervisionnode": False,
    }
    with django_assert_max_num_queries(0):
        assert verdict.user.has_perm("agents.view_agent")  # the consumer's own checks reuse the cache
    assert check_session(key, user.pk + 1).ended is not None  # the session names another user


def test_group_names_are_valid_for_channels_and_hide_the_session_key():
    from channels.layers import BaseChannelLayer

    key = "k" * 40
    for name in (session_group(key), user_group(2**63 - 1)):
        assert BaseChannelLayer().require_valid_group_name(name) and len(name) < 100
    assert key not in session_group(key) and session_group(key) != session_group("j" * 40)


def test_the_interval_is_validated_at_start():
    for bad in ("0", "31", "nan", "soon"):
        result = subprocess.run(
            [sys.executable, "-c", "import mistersmith.settings"],
            env={**os.environ, "LIVE_SESSION_CHECK_SECONDS": bad},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "LIVE_SESSION_CHECK_SECONDS must be a number of seconds from 0.05 to 30" in (
            result.stderr
        ), bad


async def test_the_sockets_of_one_session_share_each_timed_check(settings, monkeypatch):
    """Six tabs of one browser: each timer round is one check of the session, not six."""
    from mistersmith.live import socket_session

    settings.LIVE_SESSION_CHECK_SECONDS = 0.4
    calls: list[float] = []

    def counted(*args, **kwargs):
        calls.append(time.monotonic())
        return check_session(*args, **kwargs)

    monkeypatch.setattr(socket_session, "check_session", counted)
    _, cookie = await make_user(perms=("view_agent",))
    sockets = [await opened(cookie, ["agents"]) for _ in range(6)]
    calls.clear()  # the subscribe messages' own checks
    started = time.monotonic()
    assert await sockets[0].receive_nothing(timeout=1.5)  # the sockets stay open through the rounds
    rounds = (time.monotonic() - started) / 0.4
    assert 1 <= len(calls) <= rounds + 1, (len(calls), rounds)  # unshared: 6 a round
    for communicator in sockets:
        await communicator.disconnect()


async def test_a_check_asked_after_a_round_started_waits_for_a_fresh_one(monkeypatch):
    """A signal's check must read the rows after the change: it never joins a round already running,
    while a timer round joins any check started at its tick or later."""
    import threading

    from mistersmith.live import socket_session

    user, cookie = await make_user(perms=("view_agent",))
    key = session_key(cookie)
    release, calls = threading.Event(), []

    def slow(*args, **kwargs):
        calls.append(args)
        release.wait(10)
        return check_session(*args, **kwargs)

    monkeypatch.setattr(socket_session, "check_session", slow)
    checks = socket_session.SharedChecks()
    loop = asyncio.get_running_loop()
    first = asyncio.create_task(checks.check(key, user.pk, {"agents.view_agent"}, loop.time()))
    deadline = loop.time() + 10
    while not calls:  # the first round is running (blocked in its thread)
        assert loop.time() < deadline, "the first check never started"
        await asyncio.sleep(0.01)
    later = asyncio.create_task(checks.check(key, user.pk, {"agents.view_agent"}, loop.time()))
    await asyncio.sleep(0)  # it starts, and waits for the running round to end instead of joining it
    assert len(calls) == 1
    release.set()
    assert (await first).ended is None and (await later).ended is None
    assert len(calls) == 2  # a round of its own, after the first
    joined = await checks.check(key, user.pk, {"agents.view_agent"}, 0.0)  # a tick long past
    assert joined.allowed == {"agents.view_agent": True} and len(calls) == 2
