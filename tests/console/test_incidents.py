"""One incident as one story (mistersmith/console/incidents/): the story of a failure through the
real PostgreSQL (the runtime's SQL functions) and NATS (the agent's events in AGENT_EVENTS), and
the page and its JSON export with their access rules."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from mistersmith.console.incidents import agent_events
from mistersmith.console.incidents.decision import decide, failure_row
from mistersmith.console.incidents.story import incident_story
from mistersmith.jetstream import client as nats
from supervision.models import (
    SupervisionFailure,
    SupervisionNode,
    SupervisionPolicy,
    SupervisionRestart,
)

pytestmark = pytest.mark.django_db


def make_node(name: str, parent: SupervisionNode | None = None, **policy: object) -> SupervisionNode:
    """A Worker (with its agent) under ``parent``, or a root supervisor; with a policy when given."""
    if parent is None:
        node = SupervisionNode.objects.create(node_id=name, node_type="RootSupervisor", status="active")
    else:
        agent = Agent.objects.create(name=f"{name}-agent", status="Running")
        node = SupervisionNode.objects.create(
            node_id=name, node_type="Worker", node_type_detail="claude-cli", status="active", parent=parent, agent=agent
        )
    if policy:
        SupervisionPolicy.objects.create(node=node, **policy)
    return node


EXPONENTIAL = {
    "supervision_strategy": "OneForOne",
    "max_restarts": 5,
    "time_window_seconds": 60,
    "backoff_strategy": "Exponential",
    "backoff_factor": Decimal("2.00"),
    "min_restart_delay_ms": 100,
    "max_restart_delay_ms": 30_000,
}


def fail(node: SupervisionNode, at: dt.datetime, **fields: object) -> SupervisionFailure:
    return SupervisionFailure.objects.create(
        node=node,
        failure_reason=fields.pop("failure_reason", "Crash"),
        failure_detail="exit 137",
        occurred_at=at,
        **fields,
    )


def request_of(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_a_restarted_failure_tells_its_decision_restarts_and_agent_events(admin_user):
    root = make_node("inc-root")
    node = make_node("inc-worker", root, **EXPONENTIAL)
    now = timezone.now()
    fail(node, now - dt.timedelta(seconds=200))  # outside the 60 s window: not counted
    fail(node, now - dt.timedelta(seconds=40))
    fail(node, now - dt.timedelta(seconds=20))
    failure = fail(node, now - dt.timedelta(seconds=2), restart_attempted=True, recovery_action="restart")
    runtime = SupervisionRestart.objects.create(
        node=node,
        failure=failure,
        restart_attempt_number=3,
        restart_delay_ms=400,
        started_at=failure.occurred_at + dt.timedelta(milliseconds=400),
        completed_at=failure.occurred_at + dt.timedelta(seconds=1),
        success=True,
    )
    console = SupervisionRestart.objects.create(
        node=node,
        restart_attempt_number=1,
        restart_delay_ms=100,
        started_at=now,
        completed_at=now + dt.timedelta(seconds=1),
        success=False,
        error_message="agent did not come back",
        requested_by=admin_user,
        reason="by hand",
        command_sequence=42,
    )
    agent_id = node.agent_id
    for state in ("Error", "Running"):
        body = {"StateChanged": {"agent_id": str(agent_id), "old_state": "Running", "new_state": state}}
        nats.connection().publish(f"agent.{agent_id}.events", body, msg_id=uuid.uuid4().hex)

    story = incident_story(request_of(admin_user), failure.pk)

    decision = story["decision"]
    assert decision["failures_in_window"] == 3 and decision["max_restarts"] == 5
    assert decision["should_restart"] and decision["attempt"] == 3
    assert decision["delay_ms"] == 400  # calculate_restart_delay: 100 x 2^(3 - 1)
    assert not decision["escalates"] and decision["disagreements"] == []
    with connection.cursor() as cursor:
        policy_id = SupervisionPolicy.objects.get(node=node).pk
        cursor.execute("SELECT calculate_restart_delay(%s, 3)", [policy_id])
        assert cursor.fetchone()[0] == decision["delay_ms"]
    restarts = {r["id"]: r for r in story["restarts"]["records"]}
    assert set(restarts) == {str(runtime.pk), str(console.pk)}
    assert restarts[str(console.pk)]["requested_by"] == "admin"
    assert restarts[str(console.pk)]["links"]["command"].startswith(reverse("event_log:page"))
    kinds = [entry["kind"] for entry in story["timeline"]]
    assert kinds[:2] == ["failure", "decision"]
    assert kinds.count("restart") == 2 and kinds.count("completion") == 2 and kinds.count("command") == 1
    events = story["agent_events"]["events"]
    assert [event.get("status") for event in events] == ["Error", "Running"]
    assert kinds.count("agent_event") == 2
    times = [entry["at"] for entry in story["timeline"]]
    assert times == sorted(times, key=dt.datetime.fromisoformat)
    assert story["next_failure"] is None
    assert story["escalation"] == {"escalated": False, "parent": None, "parent_failures": []}


def test_an_escalated_failure_leads_to_the_parents_failure():
    root = make_node("esc-root", **{**EXPONENTIAL, "max_restarts": 10})
    node = make_node("esc-worker", root, **{**EXPONENTIAL, "max_restarts": 2})
    now = timezone.now() - dt.timedelta(hours=30)  # past AGENT_EVENTS' 24 h: the story says so
    fail(node, now - dt.timedelta(seconds=10))
    failure = fail(node, now, escalated_to_parent=True, recovery_action="escalate")
    parent_failure = fail(root, now + dt.timedelta(seconds=1), failure_reason="UnhandledError")
    later = fail(node, now + dt.timedelta(minutes=3))

    story = incident_story(request_of(_superuser()), failure.pk)

    decision = story["decision"]
    assert decision["failures_in_window"] == 2 and not decision["should_restart"]
    assert decision["attempt"] is None and decision["delay_ms"] is None
    assert decision["escalates"] and decision["escalates_to"]["name"] == "esc-root"
    assert decision["disagreements"] == []
    assert story["escalation"]["parent"]["name"] == "esc-root"
    assert [f["id"] for f in story["escalation"]["parent_failures"]] == [str(parent_failure.pk)]
    assert story["next_failure"]["id"] == str(later.pk)
    assert story["story"]["ends_at"] == "the node's next failure"
    assert "keeps 24 h" in story["agent_events"]["note"]
    kinds = [entry["kind"] for entry in story["timeline"]]
    assert kinds == ["failure", "decision", "parent_failure", "next_failure"]


def test_recorded_flags_that_disagree_with_the_rules_are_flagged():
    root = make_node("dis-root")
    node = make_node("dis-worker", root, **{**EXPONENTIAL, "max_restarts": 1, "escalate_on_error_types": ["Crash"]})
    failure = fail(node, timezone.now(), restart_attempted=True)  # 1 of 1: no restart; Crash escalates

    decision = incident_story(request_of(_superuser()), failure.pk)["decision"]

    assert not decision["should_restart"] and decision["escalates"]
    assert len(decision["escalation_reasons"]) == 2  # the error type, and the limit with escalate_on_limit
    assert len(decision["disagreements"]) == 2


@pytest.mark.parametrize("earlier", [0, 1, 2, 3, 5])
def test_the_count_as_of_the_failure_answers_as_should_restart(earlier):
    """For a failure recorded now (occurred_at = now(), as the runtime writes it), the count as of the
    failure is what the runtime's should_restart(node) counts, in the same transaction."""
    root = make_node(f"eq-root-{earlier}")
    node = make_node(f"eq-worker-{earlier}", root, **{**EXPONENTIAL, "max_restarts": 3})
    now = timezone.now()
    for i in range(earlier):
        fail(node, now - dt.timedelta(seconds=5 + i))
    fail(node, now - dt.timedelta(seconds=500))  # outside the window
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail) "
            "VALUES (%s, 'Crash', 'now') RETURNING id",
            [node.pk],
        )
        failure_id = cursor.fetchone()[0]
        cursor.execute("SELECT should_restart(%s)", [node.pk])
        runtime_answer = cursor.fetchone()[0]
    decision = decide(failure_row(failure_id))
    assert decision.should_restart == runtime_answer
    assert decision.failures_in_window == earlier + 1


def test_no_policy_no_restart_and_no_agent_events_without_an_agent():
    root = make_node("np-root")
    failure = fail(root, timezone.now())
    story = incident_story(request_of(_superuser()), failure.pk)
    assert story["decision"]["has_policy"] is False and not story["decision"]["should_restart"]
    assert story["agent_events"]["note"] == "The node has no agent."


def test_events_after_keeps_only_the_story_window():
    agent_id = uuid.uuid4()
    since = timezone.now()
    nats.connection().publish(f"agent.{agent_id}.events", {"Output": {"agent_id": str(agent_id), "content": "x"}})
    assert len(agent_events.events_after(agent_id, since - dt.timedelta(seconds=5), timezone.now()).events) == 1
    assert (
        agent_events.events_after(agent_id, since - dt.timedelta(seconds=5), since - dt.timedelta(seconds=4)).events
        == []
    )


# --- the page and the export ----------------------------------------------------------------------


def _superuser():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username="incident-super", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _staff(client, django_user_model, *codenames: str):
    user = django_user_model.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def _incident() -> SupervisionFailure:
    root = make_node(f"page-root-{uuid.uuid4().hex[:6]}")
    node = make_node(f"page-worker-{uuid.uuid4().hex[:6]}", root, **EXPONENTIAL)
    failure = fail(node, timezone.now() - dt.timedelta(seconds=1), restart_attempted=True)
    SupervisionRestart.objects.create(node=node, failure=failure, restart_attempt_number=1, restart_delay_ms=100)
    return failure


def test_the_page_shows_the_story_with_links(admin_client, django_assert_max_num_queries):
    failure = _incident()
    with django_assert_max_num_queries(6):
        response = admin_client.get(reverse("incidents:page", args=[failure.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("admin:supervision_supervisionfailure_change", args=[failure.pk]) in html
    assert reverse("incidents:json", args=[failure.pk]) in html
    assert 'data-kind="restart"' in html and 'data-kind="decision"' in html
    assert "attempt 1, delay 100 ms" in html


def test_the_json_export_is_one_attachment(admin_client):
    failure = _incident()
    response = admin_client.get(reverse("incidents:json", args=[failure.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="incident-{failure.pk}.json"'
    story = json.loads(response.content)
    assert story["failure"]["id"] == str(failure.pk)
    assert {"decision", "restarts", "agent_events", "escalation", "timeline"} <= set(story)


def test_unknown_failure_is_404(admin_client):
    assert admin_client.get(reverse("incidents:page", args=[uuid.uuid4()])).status_code == 404
    assert admin_client.get(reverse("incidents:json", args=[uuid.uuid4()])).status_code == 404


def test_access_needs_the_failure_view_permission(client, django_user_model):
    failure = _incident()
    page = reverse("incidents:page", args=[failure.pk])
    assert client.get(page).status_code == 302  # to the login form
    assert client.get(reverse("incidents:json", args=[failure.pk])).status_code == 401
    _staff(client, django_user_model, "view_supervisionnode")
    assert client.get(page).status_code == 403
    assert client.get(reverse("incidents:json", args=[failure.pk])).status_code == 403


def test_parts_the_user_may_not_view_are_hidden(client, django_user_model):
    failure = _incident()
    _staff(client, django_user_model, "view_supervisionfailure")
    response = client.get(reverse("incidents:page", args=[failure.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Hidden: you may not view supervision policies." in html
    assert "Hidden: you may not view supervision restarts." in html
    assert "Hidden: you may not view agents." in html
    assert 'data-kind="restart"' not in html and 'data-kind="decision"' not in html
    story = json.loads(client.get(reverse("incidents:json", args=[failure.pk])).content)
    assert story["decision"] is None and story["restarts"] is None and story["agent_events"] is None
    assert story["failure"]["node"]["links"] == {"admin": None, "tree": None}


def test_every_failure_links_to_its_story(admin_client, client, django_user_model):
    failure = _incident()
    url = reverse("incidents:page", args=[failure.pk])
    changelist = admin_client.get(reverse("admin:supervision_supervisionfailure_changelist"))
    assert url in changelist.content.decode()
    change = admin_client.get(reverse("admin:supervision_supervisionfailure_change", args=[failure.pk]))
    assert url in change.content.decode()
    panel = admin_client.get(reverse("supervision:tree_node", args=[failure.node_id])).json()
    template = panel["links"]["incident"]
    assert template.replace(str(uuid.UUID(int=0)), panel["failures"][0]["id"]) == url
    _staff(client, django_user_model, "view_supervisionnode")  # no failures: no story to link
    assert client.get(reverse("supervision:tree_node", args=[failure.node_id])).json()["links"]["incident"] is None


def test_hostile_text_is_escaped(admin_client):
    root = make_node("evil-root")
    node = make_node('<img src=x onerror="alert(1)">', root, **EXPONENTIAL)
    failure = fail(node, timezone.now(), failure_reason="Crash")
    SupervisionFailure.objects.filter(pk=failure.pk).update(failure_detail="<script>alert(2)</script>")
    html = admin_client.get(reverse("incidents:page", args=[failure.pk])).content.decode()
    assert "<script>alert(2)" not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert '<img src=x onerror="alert(1)">' not in html
