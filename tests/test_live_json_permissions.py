"""Issue 12, item 7: the live pages' JSON shows a model's rows only to whom the admin shows them.

The agent detail snapshot (instances, sessions, session messages, anomalies, command records, the
stored event history), the agent text endpoint, and the tree's JSON (the node panel's failures,
restarts and child states; every node's policy) each follow the admin's view permission of their
model. Each case is checked both ways: without the permission the part is empty and named in
``hidden``; with it (the view or the change permission, as the admin decides) the rows are there.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, AgentAnomaly, AgentCommandRecord, AgentInstance, InteractiveSession, SessionMessage
from mistersmith.jetstream.messages import envelope
from mistersmith.live.frames import FrameBuffer
from mistersmith.live.registry import BridgeStats
from supervision.feeds import apply_supervision_batch
from supervision.models import (
    SupervisionChildState,
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)

pytestmark = pytest.mark.django_db

AGENT_PARTS = {
    "instances": "view_agentinstance",
    "sessions": "view_interactivesession",
    "messages": "view_sessionmessage",
    "anomalies": "view_agentanomaly",
    "commands": "view_agentcommandrecord",
}
PANEL_PARTS = {
    "failures": "view_supervisionfailure",
    "restarts": "view_supervisionrestart",
    "child_states": "view_supervisionchildstate",
    "policy": "view_supervisionpolicy",
}


def client_with(*codenames: str) -> Client:
    user = get_user_model().objects.create_user(f"u-{uuid.uuid4().hex[:8]}", password="pw-123456789", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def busy_agent() -> Agent:
    agent = Agent.objects.create(name=f"busy-{uuid.uuid4().hex[:6]}", status="Running")
    AgentInstance.objects.create(agent=agent, status="running", host_name="host-a", port=1)
    session = InteractiveSession.objects.create(agent=agent, state="Ready")
    SessionMessage.objects.create(
        session=session, position=0, role="user", content="secret prompt", timestamp=timezone.now()
    )
    AgentAnomaly.objects.create(agent_id=agent.pk, event_kind="Spawned", detail="anomaly detail")
    AgentCommandRecord.objects.create(
        agent_id=agent.pk, agent_name=agent.name, command="Pause", outcome="ok", detail="x"
    )
    return agent


def snapshot(client: Client, agent: Agent) -> dict:
    response = client.get(reverse("agent_pages:detail_snapshot", args=[agent.pk]))
    assert response.status_code == 200, response.content
    return response.json()


def test_the_agent_snapshot_hides_each_part_whose_model_the_admin_hides(busy_agent):
    limited = snapshot(client_with("view_agent"), busy_agent)
    assert limited["agent"]["id"] == str(busy_agent.pk)
    for part in ("instances", "sessions", "anomalies", "commands"):
        assert limited[part] == [], part
    assert set(limited["hidden"]) == {*AGENT_PARTS, "history"}
    assert limited["history"] == [] and limited["history_error"] == limited["hidden"]["history"]
    assert "secret prompt" not in str(limited) and "anomaly detail" not in str(limited)

    full = snapshot(client_with("view_agent", "view_event_log", *AGENT_PARTS.values()), busy_agent)
    assert full["hidden"] == {}
    assert [len(full[part]) for part in ("instances", "sessions", "anomalies", "commands")] == [1, 1, 1, 1]
    assert full["sessions"][0]["messages"][0]["content"] == "secret prompt"

    # Sessions without their messages: the sessions show, the messages do not.
    sessions_only = snapshot(client_with("view_agent", "view_interactivesession"), busy_agent)
    assert len(sessions_only["sessions"]) == 1 and sessions_only["sessions"][0]["messages"] == []
    assert "messages" in sessions_only["hidden"] and "sessions" not in sessions_only["hidden"]

    # The change permission lets the admin show the rows, so it does here too.
    changer = snapshot(client_with("view_agent", "change_agentanomaly"), busy_agent)
    assert len(changer["anomalies"]) == 1 and "anomalies" not in changer["hidden"]


def test_a_session_messages_whole_text_needs_the_admins_permission(busy_agent):
    message = SessionMessage.objects.get(session__agent=busy_agent)
    url = reverse("agent_pages:text", args=[busy_agent.pk])
    refused = client_with("view_agent").get(url, {"message": message.pk})
    assert refused.status_code == 403 and refused.json() == {"error": "You may not view session messages."}
    allowed = client_with("view_agent", "view_sessionmessage").get(url, {"message": message.pk})
    assert allowed.status_code == 200 and allowed.json()["text"] == "secret prompt"


@pytest.fixture
def troubled_node() -> SupervisionNode:
    root = SupervisionNode.objects.create(node_id=f"root-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    node = SupervisionNode.objects.create(
        node_id=f"svc-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="x", parent=root
    )
    SupervisionPolicy.objects.create(node=node, max_restarts=7)
    SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="secret failure detail")
    SupervisionRestart.objects.create(node=node, restart_attempt_number=1, restart_delay_ms=10)
    SupervisionChildState.objects.create(node=node, child_id="child-1", state="Failed")
    return node


def tree_jsons(client: Client, node: SupervisionNode) -> dict[str, dict]:
    """Every tree endpoint's answer about ``node``: its panel, its parent's children, the path to it,
    the live refresh, and the page's own embedded tree."""
    answers = {
        "panel": client.get(reverse("supervision:tree_node", args=[node.pk])),
        "children": client.get(reverse("supervision:tree_children"), {"parent": str(node.parent_id)}),
        "path": client.get(reverse("supervision:tree_path", args=[node.pk])),
        "refresh": client.get(reverse("supervision:tree_nodes"), {"ids": str(node.pk)}),
    }
    assert all(response.status_code == 200 for response in answers.values())
    return {name: response.json() for name, response in answers.items()}


def node_in(answer: dict, node: SupervisionNode) -> dict:
    if "node" in answer:
        return answer["node"]
    nodes = answer.get("nodes") or [n for group in answer["groups"] for n in group["nodes"] + group["pinned"]]
    return next(n for n in nodes if n["id"] == str(node.pk))


def test_the_tree_hides_failures_restarts_child_states_and_policies_without_their_permissions(troubled_node):
    limited = tree_jsons(client_with("view_supervisionnode"), troubled_node)
    panel = limited["panel"]
    assert panel["failures"] == [] and panel["restarts"] == [] and panel["child_states"] == []
    assert set(panel["hidden"]) == set(PANEL_PARTS)
    for name, answer in limited.items():
        assert node_in(answer, troubled_node)["policy"] == {"hidden": True}, name
        assert node_in(answer, troubled_node)["budget"] == {"hidden": True}, name  # the policy's figures
    assert "secret failure detail" not in str(limited)
    page = client_with("view_supervisionnode").get(reverse("supervision:tree"), {"node": str(troubled_node.pk)})
    assert page.status_code == 200 and '"max_restarts": 7' not in page.content.decode()
    assert '"max": 7' not in page.content.decode()

    full = tree_jsons(client_with("view_supervisionnode", *PANEL_PARTS.values()), troubled_node)
    assert full["panel"]["hidden"] == {}
    assert [len(full["panel"][part]) for part in ("failures", "restarts", "child_states")] == [1, 1, 1]
    for name, answer in full.items():
        assert node_in(answer, troubled_node)["policy"]["max_restarts"] == 7, name
        assert node_in(answer, troubled_node)["budget"]["max"] == 7, name


def test_supervision_frames_name_the_nodes_to_redraw_not_the_events_body():
    """The tree and the dashboard watch the supervision topic with the node's view permission only;
    a failure's details travel to them no more (they read the nodes again, with their permissions)."""
    node, supervisor = uuid.uuid4(), str(uuid.uuid4())
    body = {"Failed": {"error_details": "secret failure detail"}, "metadata": {"supervisor_id": supervisor}}
    data = envelope(body, message_id=str(uuid.uuid4()))
    frames = FrameBuffer()
    batch = [(1, f"supervision.node.{node}.failed", json.dumps(data).encode())]
    apply_supervision_batch(batch, BridgeStats(), "test", frames)
    ((frame,),) = [[f for f in frames.take() if f["topic"] == "supervision"]]
    (event,) = frame["events"]
    assert event["node_id"] == str(node) and event["supervisor_id"] == supervisor
    assert "secret failure detail" not in str(event) and "body" not in event
