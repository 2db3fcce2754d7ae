"""An agent's history rows open their whole message as pretty JSON (issue 14, item 6), and the detail
page offers the readable output's tools: the payload endpoint through real NATS and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
from django.urls import reverse

from agents.models import Agent
from mistersmith.jetstream import client as nats
from tests.agents.test_long_texts import staff_client
from tests.live.payloads import runtime_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def payload_url(agent: Agent) -> str:
    return reverse("agent_pages:payload", args=[agent.pk])


def publish(agent: Agent, body: dict, kind: str = "events") -> int:
    return nats.connection().publish(f"agent.{agent.pk}.{kind}", runtime_bytes(body)).seq


def test_a_history_row_opens_the_whole_message_as_pretty_json(django_user_model):
    agent = Agent.objects.create(name="talker", status="Running")
    content = "<img src=x onerror=alert(1)> " + "z" * 100_000
    sequence = publish(agent, {"Output": {"agent_id": str(agent.pk), "content": content}})
    viewer = staff_client(django_user_model, "reader", "view_agent", "view_event_log")

    answer = viewer.get(payload_url(agent), {"sequence": sequence})
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    body = answer.json()
    assert (body["sequence"], body["subject"], body["json"]) == (sequence, f"agent.{agent.pk}.events", True)
    value = json.loads(body["text"])
    assert value["payload"]["Output"]["content"] == content  # the runtime's envelope, whole
    assert '\n  "payload": {\n    "Output": {' in body["text"]


def test_only_the_agents_own_messages_and_only_for_readers_of_the_stored_history(django_user_model):
    agent = Agent.objects.create(name="mine", status="Running")
    other = Agent.objects.create(name="other", status="Running")
    sequence = publish(
        agent, {"Heartbeat": {"agent_id": str(agent.pk), "timestamp": {"secs_since_epoch": 1, "nanos_since_epoch": 0}}}
    )
    viewer = staff_client(django_user_model, "reader", "view_agent", "view_event_log")
    assert viewer.get(payload_url(other), {"sequence": sequence}).status_code == 404
    assert viewer.get(payload_url(agent), {"sequence": "0"}).status_code == 400
    assert viewer.get(payload_url(agent), {"sequence": str(sequence + 10**9)}).status_code == 404

    agents_only = staff_client(django_user_model, "agents-only", "view_agent")
    refused = agents_only.get(payload_url(agent), {"sequence": sequence})
    assert refused.status_code == 403
    assert "mistersmith.view_event_log" in refused.json()["error"]
    anonymous = agents_only.__class__()
    assert anonymous.get(payload_url(agent), {"sequence": sequence}).status_code == 401


def test_the_detail_page_offers_output_search_download_and_the_heartbeat_toggle(django_user_model):
    agent = Agent.objects.create(name="tooled", status="Running")
    viewer = staff_client(django_user_model, "reader", "view_agent", "view_event_log")
    page = viewer.get(reverse("agent_pages:detail", args=[agent.pk])).content.decode()
    for element in ('id="agent-output-filter"', 'id="agent-output-download"', 'id="agent-history-hide-heartbeats"'):
        assert element in page
    config = json.loads(page.split('id="agent-config-data" type="application/json">')[1].split("<")[0])
    assert config["urls"]["payload"] == reverse("agent_pages:payload", args=[uuid.UUID(int=0)])
