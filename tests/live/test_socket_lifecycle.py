"""Issue 16, items 1 and 2, through a real server process (as ``manage.py run`` serves it) with NATS,
the in-process bridge and an outside publisher: sockets subscribed to ``events`` while events flow.

1. Clients that close their sockets normally, and a client that goes dead (no close, no pong), end
   their consumer tasks on the server: ``mistersmith_live_consumers_running`` on /metrics, which
   drops only when a consumer's task has really finished, reaches 0 (on the Redis layer the tasks
   never ended, and a stop then waited for them forever).
2. SIGTERM under load closes every socket with 1001 and the process exits within its stop timeout,
   on the Redis layer and on the in-memory one.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from agents.models import Agent
from bench.sockets import subscribed_socket
from mistersmith.live.bridge import consumers_exist as bridge_consumers_exist
from tests.conftest import delete_bridge_consumers, wait_until
from tests.live.test_scale_out import redis_url
from tests.services import ConsoleProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SOCKETS = 25
RATE = 500  # events/s while the sockets close or the server stops


def staff_cookie() -> str:
    """A staff user who may read the event log's topic, as a session cookie."""
    user = get_user_model().objects.create_user(f"life-{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_event_log"))
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def gauge(url: str, name: str) -> float:
    """One unlabelled sample of the server's /metrics (this test runs on 127.0.0.1, which may scrape)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"{name} is not on /metrics")


def wait_for_gauge(url: str, name: str, wanted: float, timeout: float) -> None:
    """Poll /metrics (a few times a second: a scrape reads PostgreSQL and NATS) until ``name`` is ``wanted``."""
    deadline = time.monotonic() + timeout
    seen = None
    while (seen := gauge(url, name)) != wanted:
        assert time.monotonic() < deadline, f"{name} is {seen}, not {wanted}, after {timeout} s"
        time.sleep(0.25)


class Publisher:
    """Heartbeats of a few agents at ``RATE``/s until stopped: the load the sockets close under.

    Stopped by a flag, not by cancelling its task: nats-py waits for each publish's ack under
    asyncio.wait_for, which on Python 3.11 can swallow a cancellation (the publisher then ran on).
    """

    def __init__(self, nats_url: str, agents: list[str]) -> None:
        self.nats_url = nats_url
        self.agents = agents
        self.published = 0
        self.stopping = False
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        import nats

        client = await nats.connect(self.nats_url)
        try:
            js = client.jetstream()
            loop = asyncio.get_running_loop()
            start = loop.time()
            while not self.stopping:
                due = int((loop.time() - start) * RATE) + 1
                while self.published < due and not self.stopping:
                    agent = self.agents[self.published % len(self.agents)]
                    stamp = {"secs_since_epoch": 1_790_000_000 + self.published, "nanos_since_epoch": 0}
                    body = {"Heartbeat": {"agent_id": agent, "timestamp": stamp}}
                    await js.publish(f"agent.{agent}.events", json.dumps(body).encode())
                    self.published += 1
                await asyncio.sleep(0.01)  # pacing of the publisher, not a wait for the server
        finally:
            await client.close()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=10)
            assert self.task.done(), "the publisher did not stop"
            self.task.result()


class EventSockets:
    """Sockets subscribed to ``events``; each counts the frames it got and keeps its close code."""

    def __init__(self, url: str, cookie: str) -> None:
        self.url, self.cookie = url, cookie
        self.sockets: list = []
        self.frames: list[int] = []
        self.close_codes: list[int | None] = []
        self.readers: list[asyncio.Task] = []

    async def open(self, count: int) -> None:
        for _ in range(count):
            # the server's pings are answered; the client sends none of its own
            socket = await subscribed_socket(self.url, self.cookie, ["events"], ping_interval=None)
            self.sockets.append(socket)
            self.frames.append(0)
            self.close_codes.append(None)
            self.readers.append(asyncio.create_task(self._read(len(self.sockets) - 1)))

    async def _read(self, index: int) -> None:
        from websockets.exceptions import ConnectionClosed

        socket = self.sockets[index]
        try:
            async for text in socket:
                if json.loads(text).get("topic") == "events":
                    self.frames[index] += 1
        except ConnectionClosed:
            pass
        self.close_codes[index] = socket.close_code

    async def wait_for_frames(self, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(self.frames):
            assert loop.time() < deadline, f"sockets without a frame: {self.frames.count(0)}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await asyncio.gather(*(socket.close() for socket in self.sockets))
        await asyncio.gather(*self.readers, return_exceptions=True)


@pytest.fixture
def live_env(nats_url):
    """Environment for a console process on its own channel-layer and bridge prefixes, and agents to publish for."""
    prefix = f"test-life-{uuid.uuid4().hex[:8]}"
    env = {
        "NATS_URL": nats_url,
        "MISTERSMITH_BRIDGE_PREFIX": prefix,
        "CHANNEL_LAYER_PREFIX": prefix,
        "LIVE_SOCKETS_PER_USER": str(SOCKETS + 5),
    }
    agents = [str(Agent.objects.create(name=f"life-{i}", status="Idle").pk) for i in range(5)]
    yield env, agents
    delete_bridge_consumers(prefix)


def started(env: dict[str, str]) -> ConsoleProcess:
    console = ConsoleProcess(**env).start()
    wait_until(lambda: bridge_consumers_exist(env["MISTERSMITH_BRIDGE_PREFIX"]), timeout=30, what="the bridge")
    return console


ROUNDS = 3


def test_sockets_closed_by_their_clients_end_their_consumers_on_redis(live_env, nats_url):
    """Rounds of 25 sockets on ``events``: events at 500/s, then the clients close normally, once
    while the events flow and then after they stopped (the case that leaked: a consumer whose
    receive was idle never ended). Every consumer task ends and leaves its groups, also when a frame
    was being sent as its client left."""
    from channels_redis.core import RedisChannelLayer

    env, agents = live_env
    console = started({**env, "REDIS_URL": redis_url()})
    cookie = staff_cookie()
    layer = RedisChannelLayer(hosts=[redis_url()], prefix=env["CHANNEL_LAYER_PREFIX"])
    try:

        async def scenario() -> None:
            for round_ in range(ROUNDS):
                publisher = Publisher(nats_url, agents)
                sockets = EventSockets(console.url, cookie)
                await sockets.open(SOCKETS)
                assert gauge(console.url, "mistersmith_live_consumers_running") == SOCKETS
                publisher.start()
                try:
                    await sockets.wait_for_frames()
                    if round_ > 0:
                        await publisher.stop()  # the sockets' receives go idle
                    await sockets.close()
                finally:
                    await publisher.stop()
                await asyncio.to_thread(wait_for_gauge, console.url, "mistersmith_live_consumers_running", 0, 15)
                assert gauge(console.url, "mistersmith_live_sockets_open") == 0
                for group in ("live.events", "live.status"):  # every socket left its groups
                    assert await layer.connection(0).zcard(layer._group_key(group)) == 0, group

        asyncio.run(scenario())
    finally:
        console.stop()


def test_a_client_gone_without_a_close_ends_its_consumer_at_the_ping_timeout(live_env):
    env, _ = live_env
    console = started({**env, "REDIS_URL": redis_url(), "WS_PING_INTERVAL": "1", "WS_PING_TIMEOUT": "1"})
    cookie = staff_cookie()
    try:

        async def scenario() -> None:
            sockets = EventSockets(console.url, cookie)
            await sockets.open(3)
            sockets.sockets[0].transport.pause_reading()  # alive for TCP, deaf to the server's pings
            await asyncio.to_thread(wait_for_gauge, console.url, "mistersmith_live_consumers_running", 2, 10)
            assert gauge(console.url, "mistersmith_live_sockets_open") == 2
            sockets.sockets[0].transport.resume_reading()
            await sockets.close()
            await asyncio.to_thread(wait_for_gauge, console.url, "mistersmith_live_consumers_running", 0, 10)

        asyncio.run(scenario())
    finally:
        console.stop()


STOP_TIMEOUT = 5.0


@pytest.mark.parametrize("layer", ["redis", "in-memory"])
def test_sigterm_under_load_closes_every_socket_with_1001_and_exits_within_the_stop_timeout(live_env, nats_url, layer):
    """25 sockets on ``events`` while 500 events/s flow (and, first, 5 sockets closed by their
    clients, which on Redis used to leave consumers that a stop waited for forever): SIGTERM.
    Every open socket gets 1001, the process exits 0 within MISTERSMITH_STOP_TIMEOUT."""
    env, agents = live_env
    env = {**env, "REDIS_URL": redis_url() if layer == "redis" else "", "MISTERSMITH_STOP_TIMEOUT": str(STOP_TIMEOUT)}
    console = started(env)
    cookie = staff_cookie()
    try:

        async def scenario() -> float:
            publisher = Publisher(nats_url, agents)
            closed_first = EventSockets(console.url, cookie)
            sockets = EventSockets(console.url, cookie)
            await closed_first.open(5)
            await sockets.open(SOCKETS)
            publisher.start()
            try:
                await closed_first.wait_for_frames()
                await publisher.stop()
                await closed_first.close()
                publisher = Publisher(nats_url, agents)
                publisher.start()
                await sockets.wait_for_frames()
                return await stopped_by_sigterm(console, sockets)
            finally:
                await publisher.stop()

        elapsed = asyncio.run(scenario())
        print(json.dumps({"layer": layer, "sockets": SOCKETS, "stop_seconds": round(elapsed, 2)}))
        assert elapsed < STOP_TIMEOUT, f"the stop took {elapsed:.1f} s"
    finally:
        console.stop()


async def stopped_by_sigterm(console: ConsoleProcess, sockets: EventSockets) -> float:
    """SIGTERM to a console whose sockets are getting frames: the seconds until it exited (with 0),
    after every socket was closed with 1001."""
    stopping = time.monotonic()
    console.process.send_signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(console.process.wait, 30)
    elapsed = time.monotonic() - stopping
    assert returncode == 0
    await asyncio.wait_for(asyncio.gather(*sockets.readers), 10)
    assert sockets.close_codes == [1001] * SOCKETS
    return elapsed


def test_a_live_socket_stays_in_its_groups_past_the_expiry_and_a_dead_member_drops_out(live_env, nats_url):
    """Group expiry 3 s, refreshed every 0.5 s: a member nobody refreshes (its process was killed)
    leaves ``live.events`` at the expiry, the live socket stays in it and keeps getting frames."""
    from channels_redis.core import RedisChannelLayer

    env, agents = live_env
    expiry = 3
    console = started(
        {**env, "REDIS_URL": redis_url(), "LIVE_GROUP_EXPIRY_SECONDS": str(expiry), "LIVE_GROUP_REFRESH_SECONDS": "0.5"}
    )
    cookie = staff_cookie()
    layer = RedisChannelLayer(hosts=[redis_url()], prefix=env["CHANNEL_LAYER_PREFIX"], group_expiry=expiry)
    try:

        async def scenario() -> None:
            sockets = EventSockets(console.url, cookie)
            await sockets.open(1)
            dead = await layer.new_channel()
            await layer.group_add("live.events", dead)
            redis, key = layer.connection(0), layer._group_key("live.events")
            assert len(await redis.zrange(key, 0, -1)) == 2
            publisher = Publisher(nats_url, agents)
            publisher.start()
            try:
                loop = asyncio.get_running_loop()
                joined = loop.time()
                deadline = joined + 20
                while dead.encode() in await redis.zrange(key, 0, -1):  # each group_send drops expired members
                    assert loop.time() < deadline, "the dead member is still in the group"
                    await asyncio.sleep(0.2)
                assert loop.time() - joined >= expiry - 0.5
                members = await redis.zrange(key, 0, -1)
                assert len(members) == 1 and members[0] != dead.encode()
                seen = sockets.frames[0]
                while sockets.frames[0] < seen + 5:  # still a member: frames keep coming
                    assert loop.time() < deadline + 10, "the live socket stopped getting frames"
                    await asyncio.sleep(0.05)
            finally:
                await publisher.stop()
                await sockets.close()
                await layer.flush()

        asyncio.run(scenario())
    finally:
        console.stop()


def test_sigterm_after_a_takeover_closes_every_socket_with_1001_and_exits_within_the_stop_timeout(live_env, nats_url):
    """Two workers on Redis; the leading one is SIGKILLed and the standby takes the bridge over. Then
    the new leader, with 25 sockets under load, gets SIGTERM: 1001 for all, exit 0 in time."""
    from mistersmith.live.leader import leader_pids

    env, agents = live_env
    env = {**env, "REDIS_URL": redis_url(), "MISTERSMITH_STOP_TIMEOUT": str(STOP_TIMEOUT)}
    prefix = env["MISTERSMITH_BRIDGE_PREFIX"]
    workers = [started(env), ConsoleProcess(**env).start()]
    cookie = staff_cookie()
    try:
        wait_until(lambda: len(leader_pids(prefix)) == 1, timeout=30, what="one leading bridge")
        leader = next(worker for worker in workers if worker.process.pid == leader_pids(prefix)[0])
        standby = next(worker for worker in workers if worker is not leader)
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(10)
        wait_until(lambda: leader_pids(prefix) == [standby.process.pid], timeout=30, what="the takeover")

        async def scenario() -> float:
            publisher = Publisher(nats_url, agents)
            sockets = EventSockets(standby.url, cookie)
            await sockets.open(SOCKETS)
            publisher.start()
            try:
                await sockets.wait_for_frames()
                return await stopped_by_sigterm(standby, sockets)
            finally:
                await publisher.stop()

        elapsed = asyncio.run(scenario())
        print(
            json.dumps({"layer": "redis", "after": "takeover", "sockets": SOCKETS, "stop_seconds": round(elapsed, 2)})
        )
        assert elapsed < STOP_TIMEOUT, f"the stop took {elapsed:.1f} s"
    finally:
        for worker in workers:
            worker.stop()
