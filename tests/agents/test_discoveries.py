"""The discovery store: capacity and eviction, filters, stats, endpoints, and the bridge feed."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from hypothesis import given
from hypothesis import strategies as st

from agents import discoveries
from agents.models import Discovery
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import InvalidMessage, decode_json, envelope
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import DeadLetter
from tests.conftest import delete_bridge_consumers, wait_until

BASE = datetime(2026, 11, 26, tzinfo=UTC)


def payload(
    n: int,
    *,
    kind: str = "Insight",
    agent: str = "a1",
    role: str = "researcher",
    confidence: float = 0.5,
    content: str = "found",
) -> dict:
    return {
        "agent_id": agent,
        "agent_role": role,
        "discovery_type": kind,
        "content": f"{content} {n}",
        "confidence": confidence,
        "timestamp": (BASE + timedelta(seconds=n)).isoformat(),
    }


def test_lower_case_types_and_both_forms_parse():
    found = discoveries.parse_discovery(envelope(payload(1, kind="pattern"), message_id="m"), sequence=3)
    assert (found.discovery_type, found.message_id, found.stream_sequence) == ("Pattern", "m", 3)


@pytest.mark.parametrize(
    "change",
    [{"discovery_type": "Rumour"}, {"confidence": 1.5}, {"confidence": True}, {"agent_id": 7}, {"timestamp": "soon"}],
)
def test_bad_discoveries_are_refused(change):
    with pytest.raises(InvalidMessage):
        discoveries.parse_discovery({**payload(1), **change})


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_invalid_message(data):
    with contextlib.suppress(InvalidMessage):
        discoveries.parse_discovery(decode_json(data))


@pytest.mark.django_db
def test_store_keeps_the_newest_thousand_and_each_sequence_once(monkeypatch):
    monkeypatch.setattr(discoveries, "CAPACITY", 50)
    first = [discoveries.parse_discovery(payload(n), sequence=n) for n in range(1, 41)]
    assert discoveries.add_discoveries(first) == 40
    again = [discoveries.parse_discovery(payload(n), sequence=n) for n in range(31, 61)]  # 31..40 repeated
    discoveries.add_discoveries(again)
    held = sorted(Discovery.objects.values_list("stream_sequence", flat=True))
    assert held == list(range(11, 61))  # 60 distinct, capacity 50: the oldest 10 evicted
    assert discoveries.stats()["capacity_used"] == 100.0


@pytest.mark.django_db
def test_filters_and_never_ones_own():
    discoveries.add_discoveries(
        [
            discoveries.parse_discovery(payload(1, kind="Question", agent="me", content="Why NATS"), sequence=1),
            discoveries.parse_discovery(
                payload(2, kind="Question", agent="you", role="coder", content="why PG", confidence=0.9), sequence=2
            ),
            discoveries.parse_discovery(payload(3, kind="Solution", agent="you", confidence=0.95), sequence=3),
        ]
    )
    query = discoveries.DiscoveryFilter.from_query(
        {"types": "question", "keywords": "why", "subscriber": "me", "min_confidence": "0.8"}
    )
    assert [d.content for d in discoveries.search(query)] == ["why PG 2"]
    assert discoveries.stats() == {
        "total_discoveries": 3,
        "unique_agents": 2,
        "discovery_types": {"Question": 2, "Solution": 1},
        "active_subscriptions": 0,
        "capacity_used": 0.3,
    }
    with pytest.raises(ValueError, match="min_confidence"):
        discoveries.DiscoveryFilter.from_query({"min_confidence": "lots"})


@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="x-pass-123")
    user.user_permissions.add(Permission.objects.get(codename="view_discovery"))
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_endpoints_answer_the_two_shapes(viewer):
    discoveries.add_discoveries([discoveries.parse_discovery(payload(n), sequence=n) for n in range(1, 8)])
    plain = viewer.get("/discoveries", {"types": "Insight"}).json()
    assert isinstance(plain, list) and len(plain) == 7 and plain[0]["content"] == "found 7"
    paged = viewer.get("/api/v1/discoveries", {"page": 2, "pageSize": 3}).json()
    assert {k: paged[k] for k in ("total", "page", "pageSize", "totalPages")} == {
        "total": 7,
        "page": 2,
        "pageSize": 3,
        "totalPages": 3,
    }
    assert [d["content"] for d in paged["data"]] == ["found 4", "found 3", "found 2"]
    assert viewer.get("/api/v1/discoveries", {"page": "0"}).status_code == 400
    assert viewer.get("/discoveries", {"types": "Rumour"}).status_code == 400


@pytest.mark.django_db
def test_endpoints_need_login_and_permission(client, django_user_model):
    assert client.get("/discoveries").status_code == 401
    client.force_login(django_user_model.objects.create_user("nobody", password="x-pass-123"))
    assert client.get("/api/v1/discoveries").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_bridge_fills_the_store_from_the_stream(nats_url):
    prefix = f"test-disc-{uuid.uuid4().hex[:10]}"
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    bridge = BridgeThread(consumer_prefix=prefix, url=nats_url)
    bridge.start()
    assert bridge.ready.wait(20)
    try:
        client = nats.connection()
        for n in range(5):
            client.publish(f"discoveries.{agent}.insights", payload(n, agent=agent), msg_id=uuid.uuid4().hex)
        client.publish(f"discoveries.{agent}.insights", b"{broken", msg_id=uuid.uuid4().hex)
        wait_until(
            lambda: (
                Discovery.objects.filter(agent_id=agent).count() == 5
                and DeadLetter.objects.filter(subject=f"discoveries.{agent}.insights").exists()
            ),
            what="five discoveries and one dead letter",
        )
    finally:
        bridge.stop()
        connections.close_all()
        delete_bridge_consumers(prefix)
    assert json.loads(json.dumps(Discovery.objects.filter(agent_id=agent).first().as_contract()))["agent_id"] == agent
