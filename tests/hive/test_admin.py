"""Every hive model has working admin CRUD on its own alias, with form errors for bad input."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hive.demo import seed_hive
from hive.models import (
    CollectiveMemory,
    ConsensusDecision,
    HiveAgent,
    HiveSession,
    MemoryEntry,
    SessionCheckpoint,
    SessionLog,
    Swarm,
    Task,
)
from tests.hive.sqlite_files import HIVE_DATABASES

pytestmark = pytest.mark.django_db(databases=HIVE_DATABASES)

HIVE_MODELS = [Swarm, HiveAgent, Task, CollectiveMemory, ConsensusDecision, HiveSession, SessionCheckpoint, SessionLog]
ALL_MODELS = [*HIVE_MODELS, MemoryEntry]


def url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:hive_{model._meta.model_name}_{view}", args=args)


def form_data(response: Any) -> dict[str, Any]:
    """POST data reproducing an admin form page as rendered: main form, inline forms, management forms."""
    data: dict[str, Any] = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        forms += formset.initial_forms
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is True:
                data[form.add_prefix(name)] = "on"
            elif value is not None and value is not False:
                data[form.add_prefix(name)] = value
    return data


@pytest.fixture
def hive() -> dict[str, int]:
    return seed_hive(swarms=1, workers_per_swarm=3, memory_entries=6)


def required_values(model: Any) -> dict[str, Any]:
    """What an admin must type to add a row of ``model`` (the rest has defaults)."""
    swarm = Swarm.objects.first()
    session = HiveSession.objects.first()
    return {
        Swarm: {"name": "new swarm", "objective": "Added in the admin"},
        HiveAgent: {"swarm": swarm.pk, "name": "Optimizer Worker", "type": "optimizer", "capabilities": '["caching"]'},
        Task: {"swarm": swarm.pk, "description": "Added in the admin"},
        CollectiveMemory: {"swarm": swarm.pk, "key": "added", "value": "in the admin", "confidence": "0.5"},
        ConsensusDecision: {"swarm": swarm.pk, "topic": "Added?", "votes": '{"queen": "approve"}', "confidence": "1"},
        HiveSession: {"swarm": swarm.pk, "swarm_name": swarm.name},
        SessionCheckpoint: {"session": session.pk, "checkpoint_name": "manual"},
        SessionLog: {"session": session.pk, "message": "Added in the admin"},
        MemoryEntry: {"key": "added", "namespace": "admin", "value": "in the admin", "ttl": "60"},
    }[model]


EDITS = {
    Swarm: ("objective", "Edited in the admin"),
    HiveAgent: ("status", "busy"),
    Task: ("status", "completed"),
    CollectiveMemory: ("value", "Edited in the admin"),
    ConsensusDecision: ("decision", "reject"),
    HiveSession: ("status", "paused"),
    SessionCheckpoint: ("checkpoint_name", "edited"),
    SessionLog: ("message", "Edited in the admin"),
    MemoryEntry: ("value", "Edited in the admin"),
}


def test_the_admin_index_lists_the_hive(admin_client, hive):
    response = admin_client.get(reverse("admin:app_list", args=["hive"]))
    assert response.status_code == 200
    listed = {model["object_name"] for model in response.context["app_list"][0]["models"]}
    assert listed == {model.__name__ for model in ALL_MODELS}
    assert all(admin.site.is_registered(model) for model in ALL_MODELS)


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_changelist_answers_and_searches(admin_client, hive, model):
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == model.objects.count() > 0
    assert admin_client.get(url(model, "changelist"), {"q": "zz-no-match"}).context["cl"].result_count == 0


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_add_page_creates_a_row(admin_client, hive, model):
    page = admin_client.get(url(model, "add"))
    assert page.status_code == 200
    before = model.objects.count()
    response = admin_client.post(url(model, "add"), {**form_data(page), **required_values(model)})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert model.objects.count() == before + 1


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_change_page_saves_an_edit(admin_client, hive, model):
    obj = model.objects.first()
    page = admin_client.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    field, value = EDITS[model]
    response = admin_client.post(url(model, "change", obj.pk), {**form_data(page), field: value})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert getattr(model.objects.get(pk=obj.pk), field) == value


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_delete_page_confirms_then_deletes(admin_client, hive, model):
    obj = model.objects.last()
    assert admin_client.get(url(model, "delete", obj.pk)).status_code == 200
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 302
    assert not model.objects.filter(pk=obj.pk).exists()


def test_deleting_a_swarm_in_the_admin_takes_its_hive_with_it(admin_client, hive):
    swarm = Swarm.objects.get()
    confirmation = admin_client.get(url(Swarm, "delete", swarm.pk))
    assert b"Queen Coordinator" in confirmation.content
    assert admin_client.post(url(Swarm, "delete", swarm.pk), {"post": "yes"}).status_code == 302
    assert not any(model.objects.exists() for model in HIVE_MODELS)
    with connections["hive"].cursor() as cursor:
        assert cursor.execute("PRAGMA foreign_key_check").fetchall() == []


def test_bulk_delete_action_works_on_the_hive_alias(admin_client, hive):
    pks = list(HiveAgent.objects.workers().values_list("pk", flat=True))
    response = admin_client.post(
        url(HiveAgent, "changelist"), {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
    )
    assert response.status_code == 302
    assert HiveAgent.objects.count() == 1
    assert Task.objects.filter(agent__isnull=True).count() == Task.objects.count()


def test_the_swarm_page_shows_queens_and_workers_inline_and_adds_them(admin_client, hive):
    swarm = Swarm.objects.get()
    page = admin_client.get(url(Swarm, "change", swarm.pk))
    queens, workers = (inline.formset for inline in page.context["inline_admin_formsets"])
    assert [form.instance.name for form in queens.initial_forms] == ["Queen Coordinator"]
    assert len(workers.initial_forms) == 3
    data = form_data(page)
    for formset, name, kind in ((queens, "Backup Queen", "coordinator"), (workers, "Tester Worker 9", "tester")):
        index = data[f"{formset.prefix}-TOTAL_FORMS"]
        data[f"{formset.prefix}-TOTAL_FORMS"] = index + 1
        data.update({f"{formset.prefix}-{index}-name": name, f"{formset.prefix}-{index}-type": kind})
    response = admin_client.post(url(Swarm, "change", swarm.pk), data)
    assert response.status_code == 302
    assert HiveAgent.objects.get(name="Backup Queen").role == "queen"
    assert HiveAgent.objects.get(name="Tester Worker 9").role == "worker"
    assert swarm.agents.queens().count() == 2 and swarm.agents.workers().count() == 4


def test_changelists_filter_by_role_status_type_and_namespace(admin_client, hive):
    assert admin_client.get(url(HiveAgent, "changelist"), {"role": "queen"}).context["cl"].result_count == 1
    assert admin_client.get(url(HiveAgent, "changelist"), {"type": "coder"}).context["cl"].result_count == 1
    swarms = admin_client.get(url(Swarm, "changelist"), {"status": "active"})
    assert swarms.context["cl"].result_count == 1
    assert b'<td class="field-queen_count">1</td>' in swarms.content
    assert b'<td class="field-worker_count">3</td>' in swarms.content
    namespaces = admin_client.get(url(MemoryEntry, "changelist"), {"namespace": "hooks"})
    assert namespaces.context["cl"].result_count == MemoryEntry.objects.filter(namespace="hooks").count() > 0


def errors_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200  # the form again, not a redirect and not a 500
    return response.context["adminform"].form.errors


@pytest.mark.parametrize(
    ("capabilities", "message"),
    [('["coding"', "Enter a valid JSON."), ('{"coding": 1}', "JSON list of strings"), ("[1, 2]", "JSON list")],
)
def test_bad_capabilities_are_a_form_error(admin_client, hive, capabilities, message):
    data = {**required_values(HiveAgent), "id": "agent-bad", "role": "worker", "capabilities": capabilities}
    errors = errors_of(admin_client.post(url(HiveAgent, "add"), data))
    assert message in str(errors["capabilities"])
    assert not HiveAgent.objects.filter(pk="agent-bad").exists()


@pytest.mark.parametrize("model", [CollectiveMemory, ConsensusDecision], ids=lambda model: model.__name__)
@pytest.mark.parametrize("confidence", ["1.5", "-0.1"])
def test_confidence_outside_zero_to_one_is_a_form_error(admin_client, hive, model, confidence):
    page = admin_client.get(url(model, "add"))
    data = {**form_data(page), **required_values(model), "confidence": confidence}
    errors = errors_of(admin_client.post(url(model, "add"), data))
    assert "confidence" in errors


def test_bad_inline_capabilities_are_a_form_error_too(admin_client, hive):
    swarm = Swarm.objects.get()
    page = admin_client.get(url(Swarm, "change", swarm.pk))
    data = form_data(page)
    data["agents-0-capabilities"] = "{oops"
    response = admin_client.post(url(Swarm, "change", swarm.pk), data)
    assert response.status_code == 200
    assert any(response.context["inline_admin_formsets"][0].formset.errors)


def test_a_duplicate_memory_key_is_a_form_error_not_an_integrity_error(admin_client, hive):
    existing = MemoryEntry.objects.first()
    data = {"key": existing.key, "namespace": existing.namespace, "value": "again"}
    errors = errors_of(admin_client.post(url(MemoryEntry, "add"), data))
    assert "already exists" in str(errors)


def test_a_text_id_is_fixed_once_created(admin_client, hive):
    agent = HiveAgent.objects.queens().get()
    page = admin_client.get(url(HiveAgent, "change", agent.pk))
    assert "id" not in page.context["adminform"].form.fields
    assert "id" in page.context["adminform"].readonly_fields
    assert "id" in admin_client.get(url(HiveAgent, "add")).context["adminform"].form.fields


@pytest.mark.parametrize("model", [Swarm, HiveAgent, Task, CollectiveMemory], ids=lambda model: model.__name__)
def test_changelists_take_the_same_number_of_queries_for_more_rows(admin_client, model):
    def queries() -> int:
        with CaptureQueriesContext(connections["hive"]) as captured:
            assert admin_client.get(url(model, "changelist")).status_code == 200
        return len(captured)

    seed_hive(swarms=1, workers_per_swarm=2, memory_entries=0, seed=1)
    few = queries()
    seed_hive(swarms=4, workers_per_swarm=6, memory_entries=0, seed=2)
    assert queries() == few


def test_admin_writes_land_on_the_routed_files(admin_client, hive):
    admin_client.post(url(MemoryEntry, "add"), {"key": "routed", "namespace": "admin", "value": "here"})
    admin_client.post(
        url(Swarm, "add"), {**form_data(admin_client.get(url(Swarm, "add"))), "id": "swarm-routed", "name": "r"}
    )
    with connections["hive_memory"].cursor() as cursor:
        assert cursor.execute("SELECT value FROM memory_entries WHERE key = 'routed'").fetchall() == [("here",)]
    with connections["hive"].cursor() as cursor:
        assert cursor.execute("SELECT name FROM swarms WHERE id = 'swarm-routed'").fetchall() == [("r",)]
