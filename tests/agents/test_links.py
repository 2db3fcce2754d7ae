"""Agent ids lead to the agent (issue 14, "dead ends"): its place in the tree, the restart of its
node from its page, and the links from anomalies, discoveries, commands, dead letters, the event log
and the discoveries page; each only for a user who may follow it. Through the real stack."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, AgentAnomaly, AgentCommandRecord, Discovery
from mistersmith.live.models import DeadLetter
from mistersmith.web.links import agent_id_in_subject
from supervision.models import SupervisionNode
from supervision.views.tree import node_tree_url

pytestmark = pytest.mark.django_db


def user_with(django_user_model, *perms: str):
    user = django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def node():
    return SupervisionNode.objects.create(node_id="links-node", node_type="Service", node_type_detail="worker")


@pytest.fixture
def agent(node):
    return Agent.objects.create(name="linked", status="Error", supervision_node=node)


def page_config(response, element_id: str):
    html = response.content.decode()
    return json.loads(html.split(f'<script id="{element_id}" type="application/json">')[1].split("</script>")[0])


def test_an_agent_in_the_tree_is_its_node_selected(admin_client, django_user_model, agent):
    url = reverse("agent_pages:tree", args=[agent.pk])
    response = admin_client.get(url)
    assert response.status_code == 302 and response["Location"] == node_tree_url(agent.supervision_node_id)
    tree = admin_client.get(response["Location"])
    assert tree.status_code == 200 and "links-node" in tree.content.decode()
    orphan = Agent.objects.create(name="orphan")
    assert admin_client.get(reverse("agent_pages:tree", args=[orphan.pk])).status_code == 404
    assert admin_client.get(reverse("agent_pages:tree", args=[uuid.uuid4()])).status_code == 404
    assert user_with(django_user_model, "agents.view_agent").get(url).status_code == 403  # may not see nodes
    response = Client().get(url)  # anonymous
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_an_error_or_terminated_agents_page_offers_its_nodes_restart(admin_client, django_user_model, agent):
    config = page_config(admin_client.get(reverse("agent_pages:detail", args=[agent.pk])), "agent-config-data")
    restart = urlsplit(config["restartUrl"])
    assert restart.path == reverse("supervision:restart", args=[agent.supervision_node_id])
    assert parse_qs(restart.query)["next"] == [reverse("agent_pages:detail", args=[agent.pk])]
    assert config["restartStates"] == ["Error", "Terminated"]
    # the link leads to the restart's confirmation, which comes back here
    confirmation = admin_client.get(config["restartUrl"])
    assert (
        confirmation.status_code == 200
        and reverse("agent_pages:detail", args=[agent.pk]) in confirmation.content.decode()
    )
    viewer = user_with(django_user_model, "agents.view_agent")
    config = page_config(viewer.get(reverse("agent_pages:detail", args=[agent.pk])), "agent-config-data")
    assert config["restartUrl"] is None  # may not restart: no link
    orphan = Agent.objects.create(name="orphan", status="Error")
    config = page_config(admin_client.get(reverse("agent_pages:detail", args=[orphan.pk])), "agent-config-data")
    assert config["restartUrl"] is None


def agent_links_html(agent_id) -> tuple[str, str]:
    return (
        f'<a href="{reverse("agent_pages:detail", args=[agent_id])}" class="agent-link">{agent_id}</a>',
        f'<a href="{reverse("agent_pages:tree", args=[agent_id])}" class="agent-tree-link"',
    )


@pytest.mark.parametrize(
    ("model", "make"),
    [
        ("agentanomaly", lambda a: AgentAnomaly.objects.create(agent_id=a.pk, event_kind="StateChanged", detail="x")),
        (
            "discovery",
            lambda a: Discovery.objects.create(
                agent_id=str(a.pk),
                agent_role="coder",
                discovery_type="pattern",
                content="c",
                confidence=0.5,
                timestamp=timezone.now(),
            ),
        ),
        (
            "agentcommandrecord",
            lambda a: AgentCommandRecord.objects.create(agent_id=a.pk, agent_name=a.name, command="Pause"),
        ),
    ],
)
def test_admin_lists_link_agent_ids(admin_client, django_user_model, agent, model, make):
    make(agent)
    changelist = reverse(f"admin:agents_{model}_changelist")
    html = admin_client.get(changelist).content.decode()
    detail, tree = agent_links_html(agent.pk)
    assert detail in html and tree in html
    # a user who may see these rows but not agents gets the bare id, no dead link
    reader = user_with(django_user_model, f"agents.view_{model}")
    html = reader.get(changelist).content.decode()
    assert str(agent.pk) in html and 'class="agent-link"' not in html
    # agents but not nodes: the live page, no tree
    reader = user_with(django_user_model, f"agents.view_{model}", "agents.view_agent")
    html = reader.get(changelist).content.decode()
    assert detail in html and 'class="agent-tree-link"' not in html


def test_dead_letters_link_the_agent_their_subject_names(admin_client, agent):
    DeadLetter.objects.create(stream="AGENT_EVENTS", subject=f"agent.{agent.pk}.events", reason="invalid", error="e")
    DeadLetter.objects.create(stream="SYSTEM_EVENTS", subject="system.control", reason="invalid", error="e")
    html = admin_client.get(reverse("admin:mistersmith_deadletter_changelist")).content.decode()
    detail, tree = agent_links_html(agent.pk)
    assert detail in html and tree in html and html.count('class="agent-link"') == 1


def test_subjects_name_their_agent():
    agent_id = uuid.uuid4()
    assert agent_id_in_subject(f"agent.{agent_id}.events") == str(agent_id)
    assert agent_id_in_subject(f"supervision.agent.{str(agent_id).upper()}.lifecycle.error") == str(agent_id)
    assert agent_id_in_subject("agent.command") is None
    assert agent_id_in_subject("system.control") is None


def test_the_event_log_and_discoveries_pages_hand_their_script_the_links_a_user_may_follow(
    admin_client, django_user_model
):
    templates = page_config(admin_client.get(reverse("event_log:page")), "event-log-config")["agentLinks"]
    assert templates["detail"] == reverse("agent_pages:detail", args=[uuid.UUID(int=0)])
    assert templates["tree"] == reverse("agent_pages:tree", args=[uuid.UUID(int=0)])
    reader = user_with(django_user_model, "mistersmith.view_event_log")
    assert page_config(reader.get(reverse("event_log:page")), "event-log-config")["agentLinks"] is None
    assert page_config(admin_client.get(reverse("discovery_pages:page")), "discovery-agent-links")["detail"]
    reader = user_with(django_user_model, "agents.view_discovery")
    assert page_config(reader.get(reverse("discovery_pages:page")), "discovery-agent-links") is None


def test_the_dashboards_counts_link_to_the_lists_they_count(admin_client, django_user_model):
    html = admin_client.get(reverse("dashboard:page")).content.decode()
    agents = reverse("agent_pages:list")
    nodes = reverse("admin:supervision_supervisionnode_changelist")
    assert f'<a data-count href="{agents}?state=Error"' in html and f'<a data-total href="{agents}"' in html
    assert f'<a data-count href="{nodes}?status__exact=failed"' in html and f'<a data-total href="{nodes}"' in html
    failures = reverse("admin:supervision_supervisionfailure_changelist")
    assert f'data-list-url="{failures}" data-time-field="occurred_at"' in html
    config = page_config(admin_client.get(reverse("dashboard:page")), "dashboard-config")
    assert config["nodeTreeUrl"] == node_tree_url(uuid.UUID(int=0))
    viewer = user_with(django_user_model, "agents.view_agent")
    config = page_config(viewer.get(reverse("dashboard:page")), "dashboard-config")
    assert config["nodeTreeUrl"] is None and config["agentLinks"]["tree"] is None


@pytest.mark.parametrize("model", ["supervisionfailure", "supervisionrestart"])
def test_node_history_lists_link_the_node_and_its_place_in_the_tree(admin_client, django_user_model, node, model):
    from supervision.models import SupervisionFailure, SupervisionRestart

    if model == "supervisionfailure":
        SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="x")
    else:
        SupervisionRestart.objects.create(node=node, restart_attempt_number=1, restart_delay_ms=0)
    changelist = reverse(f"admin:supervision_{model}_changelist")
    html = admin_client.get(changelist).content.decode()
    assert f'<a href="{node_tree_url(node.pk)}" class="node-tree-link"' in html.replace("&amp;", "&")
    reader = user_with(django_user_model, f"supervision.view_{model}")  # may not view nodes: no tree link
    assert 'class="node-tree-link"' not in reader.get(changelist).content.decode()


def test_the_tree_panel_links_a_nodes_agent_for_whom_may_view_agents(admin_client, django_user_model):
    worker_agent = Agent.objects.create(name="worker-agent", status="Running")
    worker = SupervisionNode.objects.create(
        node_id="worker-node", node_type="Worker", node_type_detail="w", agent=worker_agent
    )
    url = reverse("supervision:tree_node", args=[worker.pk])
    assert admin_client.get(url).json()["links"]["agent"] == reverse("agent_pages:detail", args=[worker_agent.pk])
    node_viewer = user_with(django_user_model, "supervision.view_supervisionnode")
    assert node_viewer.get(url).json()["links"]["agent"] is None
