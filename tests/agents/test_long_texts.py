"""Texts kept whole up to the streams' message size, shown as a preview with the whole a request away
(issue 11 item 1): Output and Error (AGENT_EVENTS, 1 MiB), discovery content and related_to
(DISCOVERIES, 64 KiB). Real NATS and PostgreSQL; and the discovery store's capacity % follows its count."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from agents import discoveries
from agents.models import Agent, Discovery, InteractiveSession, SessionMessage
from agents.texts import PREVIEW_CHARS
from mistersmith.jetstream import client as nats
from tests.live.payloads import runtime_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def staff_client(django_user_model, name: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(name, password=f"{name}-pass-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def text_url(agent: Agent) -> str:
    return reverse("agent_pages:text", args=[agent.pk])


def test_a_long_output_is_previewed_in_the_history_and_fetched_whole(django_user_model):
    agent = Agent.objects.create(name="talker", status="Running")
    whole = "<b>escaped</b> " + "x" * 800_000  # past the reader's 64 KiB and the preview, under 1 MiB
    subject = f"agent.{agent.pk}.events"
    ack = nats.connection().publish(subject, runtime_bytes({"Output": {"agent_id": str(agent.pk), "content": whole}}))
    viewer = staff_client(django_user_model, "reader", "view_agent", "view_event_log")  # the stored history

    snapshot = viewer.get(reverse("agent_pages:detail_snapshot", args=[agent.pk])).json()
    (event,) = [e for e in snapshot["history"] if e["sequence"] == ack.seq]
    assert event["kind"] == "Output" and event["text"] == whole[:PREVIEW_CHARS]
    assert event["text_length"] == len(whole)  # the page knows it holds only the start

    answer = viewer.get(text_url(agent), {"sequence": ack.seq})
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert answer.json() == {"text": whole, "length": len(whole)}

    other = Agent.objects.create(name="other", status="Running")
    assert viewer.get(text_url(other), {"sequence": ack.seq}).status_code == 404  # not this agent's event
    assert viewer.get(text_url(agent), {"sequence": "0"}).status_code == 400
    assert viewer.get(text_url(agent), {"sequence": "x"}).status_code == 400
    assert viewer.get(text_url(agent), {"sequence": str(ack.seq + 10**9)}).status_code == 404


def test_session_messages_are_previewed_and_fetched_whole(django_user_model):
    agent = Agent.objects.create(name="sessioned", status="Running")
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    whole = "y" * 300_000
    message = SessionMessage.objects.create(
        session=session, position=0, role="assistant", content=whole, timestamp=datetime.now(UTC)
    )
    viewer = staff_client(django_user_model, "reader2", "view_agent", "view_interactivesession", "view_sessionmessage")
    snapshot = viewer.get(reverse("agent_pages:detail_snapshot", args=[agent.pk])).json()
    (shown,) = snapshot["sessions"][0]["messages"]
    assert (shown["id"], shown["content"], shown["content_length"]) == (message.pk, whole[:PREVIEW_CHARS], len(whole))
    assert viewer.get(text_url(agent), {"message": message.pk}).json()["text"] == whole
    stranger = Agent.objects.create(name="stranger", status="Running")
    assert viewer.get(text_url(stranger), {"message": message.pk}).status_code == 404


def test_the_text_endpoint_has_the_pages_permission(client, django_user_model):
    agent = Agent.objects.create(name="guarded", status="Running")
    assert client.get(text_url(agent), {"message": 1}).status_code == 401
    nobody = staff_client(django_user_model, "nobody")
    assert nobody.get(text_url(agent), {"message": 1}).status_code == 403


def test_discovery_content_and_related_to_are_kept_whole():
    content = "c" * 30_000
    related = "an earlier discovery, quoted whole: " + "r" * 20_000
    body = {
        "agent_id": str(uuid.uuid4()),
        "agent_role": "researcher",
        "discovery_type": "Connection",
        "content": content,
        "confidence": 0.9,
        "timestamp": "2026-11-26T12:00:00.123456Z",
        "related_to": related,
    }
    found = discoveries.parse_discovery(body, sequence=None)
    discoveries.add_discoveries([found])
    stored = Discovery.objects.get(agent_id=body["agent_id"])
    assert (stored.content, stored.related_to) == (content, related)


@pytest.mark.parametrize("count", [0, 1, 7, 333, 999, 1000])
def test_capacity_used_follows_the_count_exactly(count):
    Discovery.objects.bulk_create(
        Discovery(
            agent_id=f"a{n % 5}",
            agent_role="r",
            discovery_type="Insight",
            content=f"d{n}",
            confidence=0.5,
            timestamp=datetime(2026, 11, 26, tzinfo=UTC),
        )
        for n in range(count)
    )
    stats = discoveries.stats()
    assert stats["total_discoveries"] == count
    assert stats["capacity_used"] == pytest.approx(100 * count / discoveries.CAPACITY, abs=1e-9)
