"""Runtime health by asking (issue 11 item 3), through real PostgreSQL and NATS: the request is in
the runtime's envelope form, an answer in the runtime's exact bytes is stored and shown by the
dashboard, /metrics and verify_state with its age, silence is "no answer for N s" (never a hang
or a traceback), and the leading bridge is the one requester.

A NATS server of the tests' own: the runtime stand-in of other tests (which answers these
requests too) must not answer ours."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from django.urls import reverse

from mistersmith.jetstream.client import SyncNats
from mistersmith.jetstream.runtime_health import parse_answer, request_envelope
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import RuntimeProbe
from mistersmith.live.runtime_probe import probe_interval, probe_once
from mistersmith.operations.verify import live as verify_live
from tests.conftest import wait_until
from tests.services import PrivateNats

pytestmark = pytest.mark.django_db(transaction=True)

# What the runtime's SystemMessageHandler publishes, byte for byte: serde_json's json! map sorts its
# keys; PoolStatus is the struct agent::pool::PoolStatus in field order.
HEALTH_ANSWER = (
    '{{"message_id":"{id}","timestamp":{{"secs_since_epoch":{secs},"nanos_since_epoch":123456789}},'
    '"source_agent":null,"target_agent":null,"correlation_id":null,"payload":{{"Success":{{"message":'
    '"System health check completed","data":{{"healthy":true,"pool_active":3,"pool_available":7,'
    '"pool_capacity":10}}}}}}}}'
)
POOL_ANSWER = (
    '{{"message_id":"{id}","timestamp":{{"secs_since_epoch":{secs},"nanos_since_epoch":5}},'
    '"source_agent":null,"target_agent":null,"correlation_id":null,"payload":{{"Success":{{"message":'
    '"Pool status retrieved","data":{{"active_count":3,"max_capacity":10,"available_slots":7,'
    '"agents":["{agent}"]}}}}}}}}'
)


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory):
    server = PrivateNats(tmp_path_factory.mktemp("probe-nats")).start()
    yield server
    server.stop()


class Responder:
    """A tiny runtime on NATS: answers SystemHealth and PoolStatus on system.control as the
    runtime does, and keeps the requests it saw."""

    def __init__(self, url: str, *, answers: bool = True) -> None:
        self.nats = SyncNats(url, create_streams=False)
        self.requests: list[dict] = []
        self.answers = answers
        self.agent = str(uuid.uuid4())
        client = self.nats.client()
        self.subscription = self.nats.run(client.subscribe("system.control", cb=self._on_request))

    async def _on_request(self, message) -> None:
        request = json.loads(message.data)
        self.requests.append(request)
        if not self.answers or not isinstance(request.get("payload"), dict):
            return
        ((kind, body),) = request["payload"].items()
        template = HEALTH_ANSWER if kind == "SystemHealth" else POOL_ANSWER
        answer = template.format(id=uuid.uuid4(), secs=int(time.time()), agent=self.agent)
        await self.nats.client().publish(body["reply_to"], answer.encode())

    def close(self) -> None:
        self.nats.run(self.subscription.unsubscribe())
        self.nats.close()


def ask(url: str, kind: str, timeout: float = 2.0) -> str:
    async def once() -> str:
        import nats

        client = await nats.connect(url)
        try:
            return await probe_once(client, kind, timeout=timeout)
        finally:
            await client.close()

    return asyncio.run(once())


def test_the_request_is_the_runtimes_envelope_form():
    envelope = request_envelope("SystemHealth", "_INBOX.abc", message_id="m-1")
    assert set(envelope) == {"message_id", "timestamp", "source_agent", "target_agent", "correlation_id", "payload"}
    assert envelope["source_agent"] is None and envelope["target_agent"] is None and envelope["correlation_id"] is None
    assert set(envelope["timestamp"]) == {"secs_since_epoch", "nanos_since_epoch"}
    assert 0 <= envelope["timestamp"]["nanos_since_epoch"] < 1_000_000_000
    assert envelope["payload"] == {"SystemHealth": {"reply_to": "_INBOX.abc"}}
    assert request_envelope("PoolStatus", "x")["payload"] == {"PoolStatus": {"reply_to": "x"}}
    with pytest.raises(ValueError, match="Unknown request"):
        request_envelope("Startup", "x")


def test_an_error_reply_and_an_unreadable_one_are_read_without_raising():
    error = parse_answer(
        b'{"message_id":"m","timestamp":{"secs_since_epoch":1,"nanos_since_epoch":0},'
        b'"source_agent":null,"target_agent":null,"correlation_id":null,'
        b'"payload":{"Error":{"error":"pool locked","code":null}}}'
    )
    assert (error.ok, error.error) == (False, "pool locked")


def test_never_asked_is_said_everywhere(admin_client):
    runtime = admin_client.get(reverse("dashboard:snapshot"), {"parts": "pool"}).json()["pool"]["runtime"]
    assert runtime["health"]["state"] == "never_asked" and runtime["health"]["text"] == "never asked"
    assert runtime["figures"]["pool_active"] is None
    rows = {row.check: row for row in verify_live.runtime_rows()}
    assert rows["runtime SystemHealth"].status == "degraded" and rows["runtime SystemHealth"].found == "never asked"


def test_an_answer_in_the_runtimes_bytes_is_stored_and_shown(private_nats, admin_client):
    responder = Responder(private_nats.url)
    try:
        assert ask(private_nats.url, "SystemHealth") == "answered"
        assert ask(private_nats.url, "PoolStatus") == "answered"
    finally:
        responder.close()
    kinds = [next(iter(request["payload"])) for request in responder.requests]
    assert kinds == ["SystemHealth", "PoolStatus"]
    health = RuntimeProbe.objects.get(kind="SystemHealth")
    assert health.data == {"healthy": True, "pool_active": 3, "pool_available": 7, "pool_capacity": 10}
    assert health.message == "System health check completed" and health.error == ""
    assert health.request_id == responder.requests[0]["message_id"]

    runtime = admin_client.get(reverse("dashboard:snapshot"), {"parts": "pool"}).json()["pool"]["runtime"]
    assert runtime["figures"] == {"pool_active": 3, "pool_capacity": 10, "pool_available": 7, "healthy": True}
    assert runtime["pool_agents"] == 1
    assert runtime["health"]["state"] == "answered" and runtime["health"]["text"].startswith("answered ")
    assert runtime["health"]["answer_age_seconds"] < 30

    from tests.operations.test_metrics import scrape, value

    samples = scrape()
    assert value(samples, "mistersmith_runtime_pool_active") == 3
    assert value(samples, "mistersmith_runtime_pool_capacity") == 10
    assert value(samples, "mistersmith_runtime_pool_available") == 7
    assert value(samples, "mistersmith_runtime_healthy") == 1
    assert 0 <= value(samples, "mistersmith_runtime_answer_age_seconds", request="SystemHealth") < 30
    assert value(samples, "mistersmith_runtime_no_answer_seconds", request="PoolStatus") == 0

    rows = {row.check: row for row in verify_live.runtime_rows()}
    assert rows["runtime SystemHealth"].status == "ok" and "pool_active 3" in rows["runtime SystemHealth"].found
    assert rows["runtime PoolStatus"].status == "ok"


def test_silence_is_no_answer_for_n_seconds_and_keeps_the_last_answer(private_nats, admin_client):
    responder = Responder(private_nats.url)
    try:
        assert ask(private_nats.url, "SystemHealth") == "answered"
        responder.answers = False
        started = time.monotonic()
        assert ask(private_nats.url, "SystemHealth", timeout=0.5) == "no_answer"
        assert time.monotonic() - started < 3  # the timeout, not a hang
        first_silence = RuntimeProbe.objects.get(kind="SystemHealth").unanswered_since
        assert ask(private_nats.url, "SystemHealth", timeout=0.5) == "no_answer"
    finally:
        responder.close()
    probe = RuntimeProbe.objects.get(kind="SystemHealth")
    assert probe.unanswered_since == first_silence  # silence counts from the first unanswered request
    assert probe.error == "no answer within 0.5 s" and probe.data["pool_active"] == 3
    described = probe.describe()
    assert described["state"] == "no_answer" and described["text"].startswith("no answer for ")
    assert "(last answer " in described["text"]

    runtime = admin_client.get(reverse("dashboard:snapshot"), {"parts": "pool"}).json()["pool"]["runtime"]
    assert runtime["health"]["state"] == "no_answer" and runtime["health"]["no_answer_seconds"] >= 0
    rows = {row.check: row for row in verify_live.runtime_rows()}
    assert rows["runtime SystemHealth"].status == "degraded"
    assert rows["runtime SystemHealth"].found.startswith("no answer for ")


def test_nobody_listening_at_all_is_no_answer_not_a_traceback(private_nats):
    assert ask(private_nats.url, "PoolStatus", timeout=0.3) == "no_answer"
    assert RuntimeProbe.objects.get(kind="PoolStatus").describe()["state"] == "no_answer"


def test_the_interval_setting_is_bounded(settings):
    settings.MISTERSMITH_RUNTIME_PROBE_SECONDS = 1
    assert probe_interval() == 5
    settings.MISTERSMITH_RUNTIME_PROBE_SECONDS = "not a number"
    assert probe_interval() == 30
    settings.MISTERSMITH_RUNTIME_PROBE_SECONDS = 120
    assert probe_interval() == 120


def test_the_leading_bridge_asks_and_stores_the_answer(private_nats):
    responder = Responder(private_nats.url)
    bridge = BridgeThread(consumer_prefix=f"test-probe-{uuid.uuid4().hex[:8]}", url=private_nats.url)
    bridge.start()
    try:
        wait_until(
            lambda: (
                RuntimeProbe.objects.filter(kind="SystemHealth", answered_at__isnull=False).exists()
                and RuntimeProbe.objects.filter(kind="PoolStatus", answered_at__isnull=False).exists()
            ),
            timeout=30,
            what="the bridge's requests answered",
        )
        # one round at start, then one per interval (30 s by default): two requests, not a stream of them
        assert sorted(next(iter(r["payload"])) for r in responder.requests) == ["PoolStatus", "SystemHealth"]
        wait_until(lambda: bridge.stats.processed["ignored:SystemHealth"] >= 1, what="the request counted as ignored")
    finally:
        bridge.stop()
        responder.close()
    assert not bridge.is_alive()
