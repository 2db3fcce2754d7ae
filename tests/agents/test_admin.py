"""The agents admin: pages answer, what the runtime owns is shown and never written back, sessions
show their messages."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, AgentInstance, InteractiveSession, SessionMessage
from mistersmith.simulator import demo

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


def test_the_runtime_owned_fields_are_shown_not_edited(admin_client):
    agent = Agent.objects.create(name="shown", status="Running")
    response = admin_client.get(reverse("admin:agents_agent_change", args=[agent.pk]))
    form = response.context["adminform"].form
    assert not {"status", "last_heartbeat", "state_changed_at"} & set(form.fields)
    assert "model" in form.fields
    assert '<div class="readonly">Running</div>' in response.content.decode()


def test_saving_the_config_keeps_what_the_runtime_wrote_meanwhile(admin_client):
    """The form is loaded while Running; the runtime pauses the agent and beats before the user
    saves a config change (with the stale status still posted): the runtime's values stay."""
    agent = Agent.objects.create(name="raced", status="Running")
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    assert admin_client.get(url).status_code == 200
    beat = timezone.now().replace(microsecond=0)
    Agent.objects.filter(pk=agent.pk).update(status="Paused", last_heartbeat=beat, state_changed_at=beat)

    response = admin_client.post(url, agent_form(agent, status="Running", timeout_seconds="600"))

    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.status, agent.last_heartbeat, agent.state_changed_at) == ("Paused", beat, beat)
    assert agent.timeout_seconds == 600


def test_a_new_agent_starts_created_whatever_is_posted(admin_client):
    data = agent_form(Agent(name="fresh"), status="Running")
    response = admin_client.post(reverse("admin:agents_agent_add"), data)
    assert response.status_code == 302
    assert Agent.objects.get(name="fresh").status == "Created"


def test_instance_status_and_heartbeat_are_the_runtimes(admin_client):
    agent = Agent.objects.create(name="inst", status="Running")
    instance = AgentInstance.objects.create(agent=agent, status="running", host_name="old-host")
    url = reverse("admin:agents_agentinstance_change", args=[instance.pk])
    form = admin_client.get(url).context["adminform"].form
    assert not {"status", "last_heartbeat"} & set(form.fields)
    beat = timezone.now().replace(microsecond=0)
    AgentInstance.objects.filter(pk=instance.pk).update(status="crashed", last_heartbeat=beat)

    response = admin_client.post(
        url,
        {"agent": str(agent.pk), "status": "running", "host_name": "new-host", "port": "", "last_heartbeat_0": ""},
    )

    assert response.status_code == 302
    instance.refresh_from_db()
    assert (instance.status, instance.last_heartbeat, instance.host_name) == ("crashed", beat, "new-host")
    inline = admin_client.get(reverse("admin:agents_agent_change", args=[agent.pk]))
    formset = next(f for f in inline.context["inline_admin_formsets"] if f.formset.prefix == "instances")
    assert not {"status", "last_heartbeat"} & set(formset.formset.forms[0].fields)


def test_session_output_is_read_only(admin_client):
    demo.seed(prefix="out", nodes=20, failures=0, sessions=1, hive=False)
    message = SessionMessage.objects.order_by("pk").first()
    original = (message.content, message.role, message.position)
    url = reverse("admin:agents_sessionmessage_change", args=[message.pk])
    assert "content" not in admin_client.get(url).context["adminform"].form.fields
    admin_client.post(url, {"content": "rewritten", "role": "user", "position": "99"})
    message.refresh_from_db()
    assert (message.content, message.role, message.position) == original
    session = admin_client.get(reverse("admin:agents_interactivesession_change", args=[message.session_id]))
    formset = next(f for f in session.context["inline_admin_formsets"] if f.formset.prefix == "messages")
    assert "content" not in formset.formset.forms[0].fields


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
