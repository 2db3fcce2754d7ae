"""The live agents pages' views: access, snapshots, keyset pages, constant queries, history from the
stream, escaping, and the command endpoint (through real NATS: a test responder answers)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents import commands, history, selectors
from agents.models import Agent, AgentAnomaly, AgentCommandRecord, AgentInstance, InteractiveSession, SessionMessage
from mistersmith.jetstream import client as nats
from supervision.models import SupervisionNode
from tests.agents.test_commands import Subscriber, reply_to

pytestmark = pytest.mark.django_db

LIST = reverse("agent_pages:list")
LIST_SNAPSHOT = reverse("agent_pages:list_snapshot")
XSS = '<img src=x onerror="window.__xss=1">'


def detail(agent: Agent) -> str:
    return reverse("agent_pages:detail", args=[agent.pk])


def detail_snapshot(agent: Agent) -> str:
    return reverse("agent_pages:detail_snapshot", args=[agent.pk])


def command_url(agent: Agent) -> str:
    return reverse("agent_pages:command", args=[agent.pk])


def staff(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(name, password=f"{name}-pass-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    return user


@pytest.fixture
def viewer_client(django_user_model) -> Client:
    client = Client()
    client.force_login(staff(django_user_model, "viewer", "view_agent"))
    return client


@pytest.fixture
def reader_client(django_user_model) -> Client:
    """Staff who may see every part of an agent's detail (the admin's view permissions of its
    instances, sessions, messages, anomalies and command records, and the event log)."""
    user = staff(django_user_model, "reader", "view_agent", "view_agentinstance", "view_interactivesession")
    parts = ["view_sessionmessage", "view_agentanomaly", "view_agentcommandrecord", "view_event_log"]
    user.user_permissions.add(*Permission.objects.filter(codename__in=parts))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(django_user_model) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff(django_user_model, "operator", "view_agent", "command_agent"))
    return client


@pytest.fixture
def responder():
    """A test runtime on agent.command that answers Success with the command it got."""
    subscriber = Subscriber(
        "agent.command",
        answer=lambda request: reply_to(request, {"Success": {"message": "done", "data": request["payload"]}}),
    )
    yield subscriber
    subscriber.close()


def make_agents(count: int, prefix: str = "agent") -> list[Agent]:
    root = SupervisionNode.objects.create(node_id=f"{prefix}-root", node_type="RootSupervisor", status="active")
    agents = Agent.objects.bulk_create(
        [Agent(name=f"{prefix}-{i:04d}", status="Running" if i % 3 else "Paused") for i in range(count)]
    )
    nodes = SupervisionNode.objects.bulk_create(
        [
            SupervisionNode(node_id=f"{a.name}-node", node_type="Worker", node_type_detail="w", agent=a, parent=root)
            for a in agents
        ]
    )
    for agent, node in zip(agents, nodes, strict=True):
        agent.supervision_node = node
    Agent.objects.bulk_update(agents, ["supervision_node"])
    AgentInstance.objects.bulk_create([AgentInstance(agent=a, status="running", host_name="h", port=1) for a in agents])
    return agents


# -- access ----------------------------------------------------------------------------------------


def test_anonymous_users_go_to_the_login_page_or_get_401(client):
    agent = Agent.objects.create(name="a")
    for url in (LIST, detail(agent)):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    for url in (LIST_SNAPSHOT, detail_snapshot(agent)):
        response = client.get(url)
        assert response.status_code == 401 and response.json()["error"]
    assert client.post(command_url(agent), {"command": "pause"}).status_code in (401, 403)


def test_staff_without_the_view_permission_get_403(django_user_model):
    client = Client()
    client.force_login(staff(django_user_model, "nobody"))
    agent = Agent.objects.create(name="a")
    assert client.get(LIST).status_code == 403
    assert client.get(detail(agent)).status_code == 403
    assert client.get(LIST_SNAPSHOT).json() == {
        "error": "You may not do this: it needs the permission agents.view_agent."
    }
    assert client.get(detail_snapshot(agent)).status_code == 403


def test_the_pages_render_in_the_admin_look(viewer_client):
    agent = Agent.objects.create(name="visible", status="Running")
    page = viewer_client.get(LIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="live-badge"' in html and "agents/live_list.js" in html and 'id="agents-config"' in html
    assert 'id="site-name"' in html  # the admin's header
    detail_page = viewer_client.get(detail(agent))
    assert detail_page.status_code == 200 and "agents/live_detail.js" in detail_page.content.decode()
    assert viewer_client.get(reverse("agent_pages:detail", args=[uuid.uuid4()])).status_code == 404


def test_command_buttons_only_for_those_who_may_command(viewer_client, operator_client):
    agent = Agent.objects.create(name="buttons", status="Running")
    assert 'data-command="Pause"' not in viewer_client.get(detail(agent)).content.decode()
    html = operator_client.get(detail(agent)).content.decode()
    assert 'data-command="Pause"' in html and "csrfmiddlewaretoken" in html and "agent-stop-confirm" in html


def test_names_are_escaped_in_the_pages(viewer_client):
    agent = Agent.objects.create(name=XSS, status="Running")
    html = viewer_client.get(detail(agent)).content.decode()
    assert XSS not in html and "&lt;img src=x onerror=" in html
    snapshot = viewer_client.get(detail_snapshot(agent)).json()
    assert snapshot["agent"]["name"] == XSS  # JSON carries the text; the page's script shows it as text


# -- the list snapshot ---------------------------------------------------------------------------


def test_the_list_snapshot_has_rows_positions_and_pages(viewer_client):
    agents = make_agents(250)
    first = viewer_client.get(LIST_SNAPSHOT).json()
    assert set(first) >= {"agents", "positions", "total", "total_is_estimate", "next", "previous", "first_page"}
    assert isinstance(first["positions"], dict)
    assert (first["total"], first["total_is_estimate"], first["first_page"], first["previous"]) == (
        250,
        False,
        True,
        None,
    )
    row = first["agents"][0]
    assert row["name"] == "agent-0000" and row["status"] == "Paused" and row["active"] is False
    assert row["config"] == {
        "model": "claude-3-5-sonnet-20241022",
        "max_turns": None,
        "timeout_seconds": 300,
        "memory_limit_mb": 512,
        "enable_mcp": True,
        "allowed_tools": None,
    }
    assert row["node"]["name"] == "agent-0000-node" and row["up_since"] and row["last_heartbeat"] is None
    second = viewer_client.get(LIST_SNAPSHOT, {"after": first["next"]}).json()
    third = viewer_client.get(LIST_SNAPSHOT, {"after": second["next"]}).json()
    names = [a["name"] for page in (first, second, third) for a in page["agents"]]
    assert names == sorted(a.name for a in agents)
    assert (len(third["agents"]), third["next"], third["first_page"]) == (50, None, False)
    back = viewer_client.get(LIST_SNAPSHOT, {"before": third["previous"]}).json()
    assert [a["name"] for a in back["agents"]] == [a["name"] for a in second["agents"]]
    assert back["next"] and back["previous"]
    start = viewer_client.get(LIST_SNAPSHOT, {"before": second["previous"]}).json()
    assert start["first_page"] and start["previous"] is None and start["agents"] == first["agents"]


def test_the_list_filters_by_state_and_name(viewer_client):
    make_agents(30)
    paused = viewer_client.get(LIST_SNAPSHOT, {"state": "Paused"}).json()
    assert paused["total"] == 10 and {a["status"] for a in paused["agents"]} == {"Paused"}
    assert paused["filters"] == {"state": "Paused"}
    found = viewer_client.get(LIST_SNAPSHOT, {"q": "T-001", "state": "Running"}).json()
    running = ["agent-0010", "agent-0011", "agent-0013", "agent-0014", "agent-0016", "agent-0017", "agent-0019"]
    assert [a["name"] for a in found["agents"]] == running  # case-insensitive, within the state
    for bad in ({"state": "Sleeping"}, {"after": "not-a-cursor"}, {"q": "x" * 201}, {"after": "a", "before": "b"}):
        response = viewer_client.get(LIST_SNAPSHOT, bad)
        assert response.status_code == 400 and response.json()["error"]


def test_uptime_counts_from_the_newest_instance_and_only_while_up():
    agent = Agent.objects.create(name="up", status="Running")
    old = AgentInstance.objects.create(agent=agent, status="stopped")
    newest = AgentInstance.objects.create(agent=agent, status="running")
    AgentInstance.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=2))
    AgentInstance.objects.filter(pk=newest.pk).update(started_at=timezone.now() - timedelta(hours=1))
    down = Agent.objects.create(name="down", status="Terminated")
    page = selectors.agent_page(selectors.ListFilter())
    rows = {row["name"]: row for row in page.rows}
    newest.refresh_from_db()
    assert rows["up"]["up_since"] == newest.started_at.isoformat()
    assert rows["down"]["up_since"] is None
    fresh = Agent.objects.create(name="fresh", status="Idle")
    fresh.refresh_from_db()
    assert selectors.agent_row(selectors.agent_with_facts(fresh.pk))["up_since"] == fresh.created_at.isoformat()
    assert down.pk


def count_queries(client: Client, url: str) -> int:
    client.get(url)  # warm: session, user, content types
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_list_answers_in_constant_queries(viewer_client, django_assert_max_num_queries):
    make_agents(10, prefix="few")
    few = count_queries(viewer_client, LIST_SNAPSHOT)
    make_agents(190, prefix="many")
    with django_assert_max_num_queries(few):
        page = viewer_client.get(LIST_SNAPSHOT).json()
    assert len(page["agents"]) == 100 and page["total"] == 200
    with django_assert_max_num_queries(few):
        viewer_client.get(LIST_SNAPSHOT, {"after": page["next"], "state": "Running", "q": "many"})
    with django_assert_max_num_queries(few):
        assert viewer_client.get(LIST).status_code == 200


def give_agent_history(agent: Agent, count: int) -> None:
    now = timezone.now()
    AgentInstance.objects.bulk_create([AgentInstance(agent=agent, status="stopped") for _ in range(count)])
    AgentAnomaly.objects.bulk_create(
        [AgentAnomaly(agent_id=agent.pk, event_kind="StateChanged", detail="x") for _ in range(count)]
    )
    sessions = InteractiveSession.objects.bulk_create([InteractiveSession(agent=agent) for _ in range(count)])
    SessionMessage.objects.bulk_create(
        [
            SessionMessage(session=s, position=p, role="assistant", content=f"m{p}", timestamp=now)
            for s in sessions
            for p in range(count // 10 + 1)
        ]
    )
    AgentCommandRecord.objects.bulk_create(
        [AgentCommandRecord(agent_id=agent.pk, command="Status", outcome="ok") for _ in range(count)]
    )


def test_the_detail_answers_in_constant_queries(reader_client, django_assert_max_num_queries):
    small, big = Agent.objects.create(name="small"), Agent.objects.create(name="big")
    give_agent_history(small, 10)
    give_agent_history(big, 200)
    few = count_queries(reader_client, detail_snapshot(small))
    with django_assert_max_num_queries(few):
        snapshot = reader_client.get(detail_snapshot(big)).json()
    assert len(snapshot["instances"]) == selectors.DETAIL_INSTANCES
    assert len(snapshot["sessions"]) == selectors.DETAIL_SESSIONS
    session = snapshot["sessions"][0]
    assert session["message_total"] == 21 and [m["content"] for m in session["messages"]] == [
        f"m{p}" for p in range(16, 21)
    ]
    assert len(snapshot["anomalies"]) == selectors.DETAIL_ANOMALIES
    assert len(snapshot["commands"]) == selectors.DETAIL_COMMANDS
    with django_assert_max_num_queries(few):
        assert reader_client.get(detail(big)).status_code == 200


# -- the event history from the stream -------------------------------------------------------------


def publish_events(agent_id: uuid.UUID, count: int, *, start: int = 0) -> None:
    client = nats.connection()
    for i in range(start, start + count):
        body = {"Output": {"agent_id": str(agent_id), "content": f"line {i}"}}
        client.publish(f"agent.{agent_id}.events", body, msg_id=uuid.uuid4().hex)


def test_history_is_the_newest_events_of_this_agent_only():
    mine, other = uuid.uuid4(), uuid.uuid4()
    for block in range(3):  # interleaved with another agent's, so the stream's tail is not ours alone
        publish_events(mine, 50, start=block * 50)
        publish_events(other, 70, start=block * 70)
    nats.connection().publish(f"agent.{mine}.output", b"raw text", msg_id=uuid.uuid4().hex)
    newest = history.agent_history(mine, 100)
    assert len(newest) == 100
    texts = [event.get("text") for event in newest]
    assert texts[:-1] == [f"line {i}" for i in range(51, 150)] and texts[-1] == "raw text"
    assert newest[-1]["kind"] == "output" and {e["kind"] for e in newest[:-1]} == {"Output"}
    sequences = [event["sequence"] for event in newest]
    assert sequences == sorted(sequences) and all(e["subject"].startswith(f"agent.{mine}.") for e in newest)
    assert [e["text"] for e in history.agent_history(mine, 3)] == ["line 148", "line 149", "raw text"]
    assert history.agent_history(uuid.uuid4(), 100) == []


def test_history_bisects_a_burst_too_big_for_one_read():
    """A dense burst behind the newest events: the search narrows it below one read's limit."""
    mine, other = uuid.uuid4(), uuid.uuid4()
    publish_fast(mine, 1100)
    publish_fast(other, 500)
    publish_fast(mine, 50, start=1100)
    newest = history.agent_history(mine, 100)
    assert [event["text"] for event in newest] == [f"line {i}" for i in range(1050, 1150)]


def publish_fast(agent_id: uuid.UUID, count: int, *, start: int = 0) -> None:
    """Many events at once: pipelined through JetStream, every ack awaited."""

    async def send(js) -> None:
        acks = []
        for i in range(start, start + count):
            body = json.dumps({"Output": {"agent_id": str(agent_id), "content": f"line {i}"}}).encode()
            acks.append(await js.publish_async(f"agent.{agent_id}.events", body))
        await asyncio.gather(*acks)

    client = nats.connection()
    client.run(send(client.client().jetstream()), timeout=60)


def test_the_detail_snapshot_carries_history_and_says_when_nats_is_away(reader_client, monkeypatch):
    agent = Agent.objects.create(name="chatty", status="Running")
    publish_events(agent.pk, 5)
    snapshot = reader_client.get(detail_snapshot(agent)).json()
    assert [e["text"] for e in snapshot["history"]] == [f"line {i}" for i in range(5)]
    assert snapshot["history_error"] is None and isinstance(snapshot["positions"], dict)
    event = snapshot["history"][0]
    assert set(event) >= {"stream", "sequence", "subject", "time", "kind", "text"}
    away = nats.SyncNats("nats://127.0.0.1:9")
    monkeypatch.setattr(nats, "_connection", away)
    try:
        snapshot = reader_client.get(detail_snapshot(agent)).json()
    finally:
        away.close()
    assert snapshot["history"] == [] and "could not be read" in snapshot["history_error"]
    assert snapshot["agent"]["name"] == "chatty"


# -- the command endpoint ----------------------------------------------------------------------------


def csrf(client: Client, agent: Agent) -> str:
    client.get(detail(agent))
    return client.cookies["csrftoken"].value


def test_a_command_is_sent_and_its_answer_returned(operator_client, responder):
    agent = Agent.objects.create(name="commanded", status="Running")
    token = csrf(operator_client, agent)
    response = operator_client.post(command_url(agent), {"command": "pause"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "ok" and body["command"] == "Pause"
    assert body["response"] == {
        "variant": "Success",
        "success": True,
        "message": "done",
        "data": {"Pause": {"agent_id": str(agent.pk)}},
        "code": None,
    }
    # the reply is the state: the pause is applied, and the answer says so
    assert body["state"] == "Paused" and "now Paused (was Running)" in body["summary"]
    record = AgentCommandRecord.objects.get(pk=body["record_id"])
    assert record.requested_by_name == "operator"
    stop = operator_client.post(
        command_url(agent), {"command": "stop", "graceful": "true", "timeout": "9"}, HTTP_X_CSRFTOKEN=token
    )
    assert stop.json()["response"]["data"]["Stop"]["timeout"] == {"secs": 9, "nanos": 0}


def test_the_command_endpoint_needs_csrf_post_and_the_permission(operator_client, viewer_client, responder):
    agent = Agent.objects.create(name="protected", status="Running")
    assert operator_client.post(command_url(agent), {"command": "pause"}).status_code == 403  # no CSRF token
    token = csrf(operator_client, agent)
    assert operator_client.get(command_url(agent)).status_code == 405
    refused = viewer_client.post(command_url(agent), {"command": "pause"})
    assert refused.status_code == 403 and refused.json()["error"]
    assert not AgentCommandRecord.objects.exists() and responder.bodies() == []
    missing = reverse("agent_pages:command", args=[uuid.uuid4()])
    assert operator_client.post(missing, {"command": "pause"}, HTTP_X_CSRFTOKEN=token).status_code == 404


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"command": "explode"}, "Unknown command"),
        ({"command": "stop", "timeout": "0"}, "from 1 to 120"),
        ({"command": "stop", "graceful": "maybe"}, "graceful must be true or false"),
        ({"command": "pause", "timeout": "5"}, "Only stop takes a timeout"),
    ],
)
def test_bad_command_input_is_400(operator_client, form, message):
    agent = Agent.objects.create(name="bad-input", status="Running")
    token = csrf(operator_client, agent)
    response = operator_client.post(command_url(agent), form, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400 and message in response.json()["error"]


def test_refused_timeout_and_unavailable_have_their_status(operator_client, monkeypatch):
    agent = Agent.objects.create(name="statuses", status="Paused")
    token = csrf(operator_client, agent)
    refused = operator_client.post(command_url(agent), {"command": "pause"}, HTTP_X_CSRFTOKEN=token)
    assert refused.status_code == 409 and refused.json()["outcome"] == "refused"
    assert "can be paused only when it is Running or Idle" in refused.json()["error"]
    unavailable = operator_client.post(command_url(agent), {"command": "status"}, HTTP_X_CSRFTOKEN=token)
    assert unavailable.status_code == 503 and "No runtime is listening" in unavailable.json()["error"]
    silent = Subscriber("agent.command")
    monkeypatch.setattr(commands, "REPLY_TIMEOUT_SECONDS", 0.3)
    try:
        timed_out = operator_client.post(command_url(agent), {"command": "resume"}, HTTP_X_CSRFTOKEN=token)
    finally:
        silent.close()
    assert timed_out.status_code == 504 and timed_out.json()["outcome"] == "timeout"
    assert "No answer from the runtime within 0.3 s" in timed_out.json()["error"]
    assert json.loads(silent.received[0][1])["payload"] == {"Resume": {"agent_id": str(agent.pk)}}
    outcomes = list(AgentCommandRecord.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["refused", "unavailable", "timeout"]
