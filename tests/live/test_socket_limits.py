"""Issue 12, items 11 and 12: a socket joins at most 50 topics over its life and a user holds a
bounded number of sockets per process; a topic ending in a newline is refused by name, not a crash.
Through the real ASGI application."""

from __future__ import annotations

import uuid

import pytest

from mistersmith.live.consumer import LIVE_TOPICS_PER_SOCKET, OPEN_SOCKETS, TOO_MANY, topic_permission
from tests.live.test_live_socket import make_user, socket

pytestmark = pytest.mark.django_db(transaction=True)


def agent_topics(count: int) -> list[str]:
    return [f"agent.{uuid.uuid4()}" for _ in range(count)]


async def test_fifty_topics_per_socket_in_all_not_per_message():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    assert (await communicator.connect())[0]
    first, second = agent_topics(30), agent_topics(21)
    await communicator.send_json_to({"subscribe": first})
    assert len((await communicator.receive_json_from(timeout=5))["subscribed"]) == 30
    await communicator.send_json_to({"subscribe": second})  # 51 in all
    reply = await communicator.receive_json_from(timeout=5)
    assert reply == {"error": f"At most {LIVE_TOPICS_PER_SOCKET} topics per socket in all; open a new page for others."}
    await communicator.send_json_to({"subscribe": [*first, *second[:20]]})  # 50 distinct: allowed
    assert len((await communicator.receive_json_from(timeout=5))["subscribed"]) == 50
    await communicator.send_json_to({"subscribe": ["nonsense"]})  # refused names count too
    assert "error" in await communicator.receive_json_from(timeout=5)
    await communicator.disconnect()


async def test_one_message_of_more_than_fifty_topics_is_refused():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    await communicator.connect()
    await communicator.send_json_to({"subscribe": agent_topics(51)})
    assert "error" in await communicator.receive_json_from(timeout=5)
    await communicator.disconnect()


async def test_a_user_holds_a_bounded_number_of_sockets_and_gets_told_why(settings):
    settings.LIVE_SOCKETS_PER_USER = 2
    user, cookie = await make_user(perms=("view_agent",))
    other_user_socket = socket((await make_user(perms=("view_agent",)))[1])
    first, second, third = socket(cookie), socket(cookie), socket(cookie)
    assert (await first.connect())[0] and (await second.connect())[0]
    assert (await third.connect())[0]  # accepted only to say why
    assert await third.receive_json_from(timeout=5) == {
        "error": "At most 2 live sockets per user; close another page first."
    }
    closed = await third.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == TOO_MANY
    assert "At most 2 live sockets" in closed["reason"]
    assert (await other_user_socket.connect())[0]  # per user, not per process
    await first.disconnect()
    fourth = socket(cookie)
    assert (await fourth.connect())[0]  # a closed socket frees its place
    await fourth.send_json_to({"subscribe": ["agents"]})
    assert (await fourth.receive_json_from(timeout=5))["subscribed"] == ["agents"]
    for communicator in (second, fourth, other_user_socket):
        await communicator.disconnect()
    assert OPEN_SOCKETS[user.pk] == 0


async def test_a_topic_ending_in_a_newline_is_refused_by_name():
    _, cookie = await make_user(perms=("view_agent",))
    communicator = socket(cookie)
    await communicator.connect()
    crafted = [f"agent.{uuid.uuid4()}\n", "agents\n", f"agent.{uuid.uuid4()}\r"]
    await communicator.send_json_to({"subscribe": crafted})
    assert await communicator.receive_json_from(timeout=5) == {"subscribed": [], "refused": crafted}
    await communicator.send_json_to({"subscribe": ["agents"]})  # the socket still works
    assert (await communicator.receive_json_from(timeout=5))["subscribed"] == ["agents"]
    await communicator.disconnect()


def test_topic_permission_needs_the_whole_name():
    topic = f"agent.{uuid.uuid4()}"
    assert topic_permission(topic) == "agents.view_agent"
    assert topic_permission(topic + "\n") is None
    assert topic_permission(topic + "x") is None
