"""The live WebSocket through the real ASGI application: auth, origin, topic permissions, frames."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client

from mistersmith.asgi import application
from mistersmith.live.consumer import REFUSED
from mistersmith.live.frames import FrameBuffer, send_bridge_status, send_frames

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def socket(cookie: bytes | None = None, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


@sync_to_async
def make_user(*, staff: bool = True, perms: tuple[str, ...] = ()):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user, session_cookie(user)


async def test_anonymous_socket_is_refused():
    connected, code = await socket().connect()
    assert not connected and code == REFUSED


async def test_non_staff_socket_is_refused():
    _, cookie = await make_user(staff=False)
    connected, code = await socket(cookie).connect()
    assert not connected and code == REFUSED


async def test_cross_origin_socket_is_refused():
    _, cookie = await make_user(perms=("view_agent",))
    connected, _ = await socket(cookie, origin=b"https://evil.example").connect()
    assert not connected


async def test_a_user_gets_only_the_topics_they_may_see_and_their_frames():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    connected, _ = await communicator.connect()
    assert connected
    agent_topic = f"agent.{uuid.uuid4()}"
    await communicator.send_json_to(
        {"subscribe": ["agents", agent_topic, "system", "supervision", "events", "nonsense"]}
    )
    reply = await communicator.receive_json_from(timeout=5)
    assert reply == {
        "subscribed": sorted(["agents", agent_topic, "system"]),
        "refused": ["supervision", "events", "nonsense"],
    }

    frames = FrameBuffer()
    frames.add("supervision", {"kind": "restart_completed"}, 7)  # not theirs: never arrives
    for sequence in (11, 12):
        frames.add("agents", {"kind": "StateChanged", "status": "Idle", "note": "<script>x</script>"}, sequence)
    await send_frames(frames.take())
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["topic"] == "agents" and frame["sequence"] == 12 and len(frame["events"]) == 2
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_bad_subscribe_messages_get_a_clear_error():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    await communicator.connect()
    await communicator.send_json_to({"subscribe": "agents"})
    assert "error" in await communicator.receive_json_from(timeout=5)
    await communicator.disconnect()


async def test_a_discovery_filter_on_the_socket_passes_only_matching_discoveries():
    _, cookie = await make_user(perms=("view_discovery",))
    communicator = socket(cookie)
    await communicator.connect()
    filters = {"discoveries": {"types": "pattern", "min_confidence": "0.5", "subscriber": "me"}}
    await communicator.send_json_to({"subscribe": ["discoveries"], "filters": filters})
    assert (await communicator.receive_json_from(timeout=5))["subscribed"] == ["discoveries"]

    def discovery(kind: str, confidence: float, agent: str = "other") -> dict:
        return {"discovery_type": kind, "confidence": confidence, "agent_id": agent, "content": "x", "agent_role": "r"}

    frames = FrameBuffer()
    for item in (discovery("Insight", 0.9), discovery("Pattern", 0.2), discovery("Pattern", 0.9, agent="me")):
        frames.add("discoveries", item, 1)
    await send_frames(frames.take())
    assert await communicator.receive_nothing(timeout=0.3)  # none of them matches: no frame at all
    frames.add("discoveries", discovery("Pattern", 0.7), 2)
    await send_frames(frames.take())
    frame = await communicator.receive_json_from(timeout=5)
    assert [event["confidence"] for event in frame["events"]] == [0.7]

    await communicator.send_json_to({"subscribe": ["discoveries"], "filters": {"discoveries": {"min_confidence": "2"}}})
    assert "min_confidence" in (await communicator.receive_json_from(timeout=5))["error"]
    await communicator.disconnect()


async def test_every_socket_hears_when_the_bridge_loses_and_regains_nats():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    assert (await communicator.connect())[0]
    await send_bridge_status(False)
    assert await communicator.receive_json_from(timeout=5) == {"bridge": {"connected": False}}
    await send_bridge_status(True)
    assert await communicator.receive_json_from(timeout=5) == {"bridge": {"connected": True}}
    await communicator.disconnect()
