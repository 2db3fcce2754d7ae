"""Two console workers behind one port on the Redis channel layer, each with a bridge sharing the
same durable consumers: every event reaches every socket exactly once, whichever worker holds it;
one bridge leads and the other takes over when its worker is killed.

Each worker is a process of its own (uvicorn, bridge in process); a small round-robin TCP proxy
is the one port in front of them, as a load balancer would be, so the sockets land on both. It
needs Redis: REDIS_URL, or the machine's Redis on 6379 (CI has it in both of its runs).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from agents.models import Agent
from mistersmith.live.leader import leader_pids
from tests.conftest import delete_bridge_consumers, wait_until
from tests.e2e.conftest import bridge_consumers_exist
from tests.services import ConsoleProcess, RoundRobinProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SOCKETS_PER_WORKER = 10
EVENTS = 300


def redis_url() -> str:
    import redis

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is needed for the scale-out test in CI: {error}")
        pytest.skip(f"needs Redis (REDIS_URL or 127.0.0.1:6379): {error}")
    return url


def staff_cookie() -> str:
    user = get_user_model().objects.create_user(f"scale-{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent", content_type__app_label="agents"))
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class Sockets:
    """WebSockets on the ``agents`` topic; counts, per socket, each AGENT_EVENTS sequence it got."""

    def __init__(self) -> None:
        self.sockets: list = []
        self.received: list[Counter] = []
        self.tasks: list[asyncio.Task] = []

    async def open(self, url: str, count: int, cookie: str) -> list[int]:
        from websockets.asyncio.client import connect

        indexes = []
        for _ in range(count):
            socket = await connect(
                url.replace("http://", "ws://") + "/ws/live/", origin=url, additional_headers={"Cookie": cookie}
            )
            await socket.send(json.dumps({"subscribe": ["agents"]}))
            while "subscribed" not in json.loads(await socket.recv()):
                pass
            received: Counter = Counter()
            self.sockets.append(socket)
            self.received.append(received)
            self.tasks.append(asyncio.create_task(self._receive(socket, received)))
            indexes.append(len(self.sockets) - 1)
        return indexes

    @staticmethod
    async def _receive(socket, received: Counter) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in socket:
                frame = json.loads(text)
                for event in frame.get("events", ()) if frame.get("topic") == "agents" else ():
                    if event.get("stream") == "AGENT_EVENTS":
                        received[event["sequence"]] += 1
        except ConnectionClosed:  # the sockets of the killed worker
            pass

    async def wait_for(self, indexes: list[int], sequences: set[int], timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(sequences <= self.received[i].keys() for i in indexes):
            assert loop.time() < deadline, "not every socket got every event"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for socket in self.sockets:
            await socket.close()


async def publish_heartbeats(nats_url: str, agents: list[str], count: int) -> set[int]:
    import nats

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        sequences = set()
        for index in range(count):
            agent = agents[index % len(agents)]
            stamp = {"secs_since_epoch": 1_790_000_000 + index, "nanos_since_epoch": 0}
            body = {"Heartbeat": {"agent_id": agent, "timestamp": stamp}}
            ack = await js.publish(f"agent.{agent}.events", json.dumps(body).encode())
            sequences.add(ack.seq)
        return sequences
    finally:
        await client.close()


def test_two_workers_one_leading_bridge_every_socket_every_event_once_and_a_takeover(nats_url):
    env = {
        "REDIS_URL": redis_url(),
        "CHANNEL_LAYER_PREFIX": f"test-scale-{uuid.uuid4().hex[:8]}",
        "MISTERSMITH_BRIDGE_PREFIX": f"test-scale-{uuid.uuid4().hex[:8]}",
        "NATS_URL": nats_url,
    }
    prefix = env["MISTERSMITH_BRIDGE_PREFIX"]
    agents = [str(Agent.objects.create(name=f"scale-{i}", status="Idle").pk) for i in range(5)]
    cookie = staff_cookie()
    workers = [ConsoleProcess(**env), ConsoleProcess(**env)]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: len(leader_pids(prefix)) == 1, timeout=30, what="one leading bridge")
        wait_until(lambda: bridge_consumers_exist(prefix), timeout=30, what="the leader's consumers")
        leader_pid = leader_pids(prefix)[0]
        leader = next(worker for worker in workers if worker.process.pid == leader_pid)
        standby = next(worker for worker in workers if worker is not leader)

        async def scenario() -> None:
            proxy = await RoundRobinProxy([worker.port for worker in workers]).start()
            sockets = Sockets()
            try:
                opened = await sockets.open(proxy.url, 2 * SOCKETS_PER_WORKER, cookie)
                on_leader = [i for i in opened if proxy.backend_of[i] == leader.port]
                on_standby = [i for i in opened if proxy.backend_of[i] == standby.port]
                assert len(on_leader) == len(on_standby) == SOCKETS_PER_WORKER
                first = await publish_heartbeats(nats_url, agents, EVENTS)
                await sockets.wait_for(on_leader + on_standby, first)
                for index in on_leader + on_standby:  # one leader: every frame once
                    twice = [sequence for sequence, times in sockets.received[index].items() if times > 1]
                    assert not twice, f"socket {index} got events more than once: {twice[:10]}"

                leader.process.send_signal(signal.SIGKILL)  # its bridge dies mid-whatever it was doing
                leader.process.wait(10)
                second = await publish_heartbeats(nats_url, agents, EVENTS)
                # Across the takeover frames are at least once (the new leader frames again what the
                # dead one may not have sent; pages drop repeats): every event, none lost.
                await sockets.wait_for(on_standby, second, timeout=90)
            finally:
                await sockets.close()
                await proxy.stop()

        asyncio.run(scenario())
        assert leader_pids(prefix) == [standby.process.pid]  # the standby took over
    finally:
        for worker in workers:
            worker.stop()
        delete_bridge_consumers(prefix)
