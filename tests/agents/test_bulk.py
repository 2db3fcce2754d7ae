"""Issue 14, item 5: bulk Pause, Resume and Stop through the real stack (PostgreSQL, NATS, the
simulator stand-in answering agent.command): the plan counts, the confirmation, the run and each
agent's result, the permission, the limit, and who/when in the admin's history."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from agents import bulk
from agents.models import Agent, AgentCommandRecord, BulkCommandRun
from agents.selectors import ListFilter
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def staff(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(name, password=f"{name}-pass-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def operator(django_user_model):
    return staff(django_user_model, "bulk-operator", "view_agent", "command_agent", "view_agentcommandrecord")


@pytest.fixture
def operator_client(operator) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(operator)
    return client


def fleet(prefix: str) -> dict[str, Agent]:
    """Three Running agents, one Paused, one Terminated, named so the name filter finds them."""
    states = {"a": "Running", "b": "Running", "c": "Running", "d": "Paused", "e": "Terminated"}
    return {key: Agent.objects.create(name=f"{prefix}-{key}", status=state) for key, state in states.items()}


def test_a_plan_counts_the_agents_by_state_and_those_the_command_reaches():
    agents = fleet("plan")
    plan = bulk.plan_bulk("pause", filters=ListFilter(search="plan-"))
    assert (plan.command, plan.scope, plan.total, plan.reachable) == ("Pause", "filter", 5, 3)
    assert dict(plan.by_state) == {"Running": 3, "Paused": 1, "Terminated": 1}
    selection = bulk.plan_bulk("Resume", agent_ids=[agents["a"].pk, agents["d"].pk, agents["d"].pk])
    assert (selection.scope, selection.total, selection.reachable) == ("selection", 2, 1)
    assert selection.fingerprint != bulk.plan_bulk("Resume", agent_ids=[agents["d"].pk]).fingerprint
    with pytest.raises(bulk.BulkRefused, match="Pause, Resume or Stop"):
        bulk.plan_bulk("Status", agent_ids=[agents["a"].pk])
    with pytest.raises(bulk.BulkRefused, match="No agent"):
        bulk.plan_bulk("Pause", filters=ListFilter(search="nobody-is-called-this"))


def test_more_agents_than_the_limit_are_refused_with_the_count(monkeypatch):
    fleet("many")
    monkeypatch.setattr(bulk, "BULK_LIMIT", 4)
    with pytest.raises(bulk.BulkRefused, match="More than 4 agents match this filter"):
        bulk.plan_bulk("Stop", filters=ListFilter(search="many-"))
    assert bulk.plan_bulk("Stop", filters=ListFilter(state="Running", search="many-")).total == 3


def test_a_run_sends_one_command_per_agent_and_records_each_result(stand_in, operator):
    agents = fleet("run")
    plan = bulk.plan_bulk("Pause", filters=ListFilter(search="run-"))
    run = bulk.start_bulk(operator, plan, wait=True)
    run.refresh_from_db()
    assert run.finished_at is not None and run.total == 5
    outcomes = dict(AgentCommandRecord.objects.filter(bulk_run=run).values_list("agent_name", "outcome"))
    assert outcomes == {"run-a": "ok", "run-b": "ok", "run-c": "ok", "run-d": "refused", "run-e": "refused"}
    states = dict(Agent.objects.filter(pk__in=[a.pk for a in agents.values()]).values_list("name", "status"))
    assert states == {"run-a": "Paused", "run-b": "Paused", "run-c": "Paused", "run-d": "Paused", "run-e": "Terminated"}
    results = bulk.run_results(run).as_json()
    assert results["state"] == "done" and results["counts"] == {"ok": 3, "refused": 2}
    assert [row["name"] for row in results["results"]] == ["run-a", "run-b", "run-c", "run-d", "run-e"]
    # who and when: the run in the admin's history, and each agent's own command line
    entry = LogEntry.objects.get(object_id=str(run.pk))
    assert entry.user_id == operator.pk and "Bulk Pause of 5 agents" in entry.change_message
    assert LogEntry.objects.filter(
        object_id=str(agents["a"].pk), change_message__startswith="Pause command: ok"
    ).exists()
    assert bulk.recent_runs(operator)[0]["counts"] == {"ok": 3, "refused": 2}


def test_without_the_command_permission_nothing_starts(django_user_model):
    viewer = staff(django_user_model, "bulk-viewer", "view_agent")
    agent = Agent.objects.create(name="untouched", status="Running")
    with pytest.raises(PermissionDenied):
        bulk.start_bulk(viewer, bulk.plan_bulk("Pause", agent_ids=[agent.pk]))
    assert not BulkCommandRun.objects.exists()


def test_the_pages_confirm_with_a_count_then_show_each_result(stand_in, operator_client):
    agents = fleet("page")
    form = {"command": "Stop", "scope": "selection", "agent": [str(agents["a"].pk), str(agents["e"].pk)]}
    confirmation = operator_client.post(reverse("agent_pages:bulk"), form)
    assert confirmation.status_code == 200
    text = confirmation.content.decode()
    assert "Stop 2 agents" in text and "<strong>1</strong> of them are in a state Stop applies to" in text
    assert not BulkCommandRun.objects.exists()  # nothing before the confirmation
    fingerprint = confirmation.context["plan"].fingerprint

    stale = operator_client.post(reverse("agent_pages:bulk"), {**form, "confirm": "yes", "fingerprint": "old"})
    assert stale.status_code == 409 and not BulkCommandRun.objects.exists()

    started = operator_client.post(reverse("agent_pages:bulk"), {**form, "confirm": "yes", "fingerprint": fingerprint})
    run = BulkCommandRun.objects.get()
    assert started.status_code == 302 and started["Location"] == reverse("agent_pages:bulk_run", args=[run.pk])
    assert operator_client.get(started["Location"]).status_code == 200
    results_url = reverse("agent_pages:bulk_results", args=[run.pk])
    wait_until(lambda: operator_client.get(results_url).json()["state"] == "done", what="the bulk run to end")
    results = {row["name"]: row["outcome"] for row in operator_client.get(results_url).json()["results"]}
    assert results == {"page-a": "ok", "page-e": "refused"}


def test_everything_matching_the_filter_goes_through_the_filter_form(stand_in, operator_client):
    fleet("filt")
    Agent.objects.create(name="other-running", status="Running")
    form = {"command": "Pause", "scope": "filter", "state": "Running", "q": "filt-"}
    confirmation = operator_client.post(reverse("agent_pages:bulk"), form)
    assert "Pause 3 agents" in confirmation.content.decode()
    fingerprint = confirmation.context["plan"].fingerprint
    operator_client.post(reverse("agent_pages:bulk"), {**form, "confirm": "yes", "fingerprint": fingerprint})
    run = BulkCommandRun.objects.get()
    assert run.filters == {"state": "Running", "q": "filt-"} and run.scope == "filter"
    wait_until(lambda: BulkCommandRun.objects.get().finished_at is not None, what="the bulk run to end")
    assert Agent.objects.get(name="other-running").status == "Running"
    assert Agent.objects.filter(name__startswith="filt-", status="Paused").count() == 4  # 3 paused + d


def test_bulk_pages_need_login_the_command_permission_and_a_post(django_user_model, client):
    agent = Agent.objects.create(name="guarded", status="Running")
    form = {"command": "Pause", "scope": "selection", "agent": [str(agent.pk)]}
    anonymous = client.post(reverse("agent_pages:bulk"), form)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    viewer = Client()
    viewer.force_login(staff(django_user_model, "bulk-viewer2", "view_agent"))
    assert viewer.post(reverse("agent_pages:bulk"), form).status_code == 403
    commander = Client(enforce_csrf_checks=True)
    commander.force_login(staff(django_user_model, "bulk-csrf", "view_agent", "command_agent"))
    assert commander.post(reverse("agent_pages:bulk"), form).status_code == 403  # no CSRF token
    assert commander.get(reverse("agent_pages:bulk")).status_code == 405
    assert not BulkCommandRun.objects.exists()


def test_the_list_snapshot_marks_rows_with_their_newest_command(stand_in, operator, operator_client):
    agents = fleet("mark")
    bulk.start_bulk(operator, bulk.plan_bulk("Pause", agent_ids=[agents["a"].pk, agents["d"].pk]), wait=True)
    snapshot = operator_client.get(reverse("agent_pages:list_snapshot"), {"q": "mark-"}).json()
    marks = snapshot["commands"]
    assert marks[str(agents["a"].pk)]["outcome"] == "ok" and marks[str(agents["a"].pk)]["command"] == "Pause"
    assert marks[str(agents["d"].pk)]["outcome"] == "refused"
    assert marks[str(agents["a"].pk)]["bulk_run"] is not None
    assert str(agents["b"].pk) not in marks
