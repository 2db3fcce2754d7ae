"""The agents admin: pages answer, the lifecycle guards status edits, sessions show their messages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Agent, InteractiveSession
from mistersmith import demo

pytestmark = pytest.mark.django_db

MODELS = ["agent", "agentinstance", "interactivesession", "sessionmessage"]


@pytest.mark.parametrize("model", MODELS)
def test_pages_answer(admin_client, model):
    demo.seed(prefix="ag", nodes=20, failures=0, hive=False)
    changelist = admin_client.get(reverse(f"admin:agents_{model}_changelist"))
    assert changelist.status_code == 200
    obj = changelist.context["cl"].result_list[0]
    for view in ("change", "delete"):
        assert admin_client.get(reverse(f"admin:agents_{model}_{view}", args=[obj.pk])).status_code == 200
    assert admin_client.get(reverse(f"admin:agents_{model}_add")).status_code == 200


def agent_form(agent: Agent, **overrides) -> dict:
    data = {
        "name": agent.name,
        "agent_type": agent.agent_type,
        "status": agent.status,
        "supervision_node": "",
        "model": agent.model,
        "max_turns": "",
        "allowed_tools": "",
        "enable_mcp": "on",
        "timeout_seconds": "300",
        "memory_limit_mb": "512",
        "instances-TOTAL_FORMS": "0",
        "instances-INITIAL_FORMS": "0",
        "sessions-TOTAL_FORMS": "0",
        "sessions-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_an_illegal_status_edit_is_a_form_error(admin_client):
    agent = Agent.objects.create(name="x", status="Terminated")
    response = admin_client.post(
        reverse("admin:agents_agent_change", args=[agent.pk]), agent_form(agent, status="Running")
    )
    assert response.status_code == 200
    assert "cannot move from Terminated to Running" in " ".join(response.context["adminform"].form.errors["status"])
    agent.refresh_from_db()
    assert agent.status == "Terminated"


def test_a_legal_status_edit_is_saved(admin_client):
    agent = Agent.objects.create(name="y", status="Running")
    response = admin_client.post(
        reverse("admin:agents_agent_change", args=[agent.pk]),
        agent_form(agent, status="Paused", allowed_tools="Read,Write"),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.status, agent.allowed_tools) == ("Paused", ["Read", "Write"])


def test_bad_config_values_are_form_errors(admin_client):
    agent = Agent.objects.create(name="z")
    response = admin_client.post(
        reverse("admin:agents_agent_change", args=[agent.pk]),
        agent_form(agent, timeout_seconds="0", memory_limit_mb="lots", max_turns="-3"),
    )
    errors = response.context["adminform"].form.errors
    assert {"timeout_seconds", "memory_limit_mb", "max_turns"} <= set(errors)


def test_session_page_lists_messages_in_order(admin_client):
    demo.seed(prefix="ses", nodes=20, failures=0, sessions=2, hive=False)
    session = InteractiveSession.objects.first()
    response = admin_client.get(reverse("admin:agents_interactivesession_change", args=[session.pk]))
    formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "messages")
    positions = [form.instance.position for form in formset.formset.forms if form.instance.pk]
    assert positions == sorted(positions) and len(positions) == 4
