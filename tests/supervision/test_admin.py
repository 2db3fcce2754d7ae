"""The supervision admin: every page answers, bad input becomes a form error, big lists stay cheap."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from agents.models import Agent
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy, SupervisionRestart

pytestmark = pytest.mark.django_db


@pytest.fixture
def installation():
    demo.seed(prefix="adm", nodes=40, failures=400, hive=False)


MODELS = ["supervisionnode", "supervisionpolicy", "supervisionfailure", "supervisionrestart", "supervisionchildstate"]


@pytest.mark.parametrize("model", MODELS)
def test_changelist_add_and_change_pages_answer(admin_client, installation, model):
    changelist = admin_client.get(reverse(f"admin:supervision_{model}_changelist"))
    assert changelist.status_code == 200
    obj = changelist.context["cl"].result_list[0]
    assert admin_client.get(reverse(f"admin:supervision_{model}_change", args=[obj.pk])).status_code == 200
    assert admin_client.get(reverse(f"admin:supervision_{model}_add")).status_code == 200
    assert admin_client.get(reverse(f"admin:supervision_{model}_delete", args=[obj.pk])).status_code == 200


def test_changelists_filter_and_search(admin_client, installation):
    url = reverse("admin:supervision_supervisionfailure_changelist")
    response = admin_client.get(url, {"failure_reason__exact": "Crash"})
    assert {f.failure_reason for f in response.context["cl"].result_list} == {"Crash"}
    node = SupervisionNode.objects.get(node_id="adm-root")
    response = admin_client.get(reverse("admin:supervision_supervisionnode_changelist"), {"q": "adm-root"})
    assert list(response.context["cl"].result_list) == [node]


def node_form(**overrides) -> dict:
    data = {
        "node_id": "form-node",
        "node_type": "Service",
        "node_type_detail": "db",
        "status": "active",
        "parent": "",
        "agent": "",
        "configuration": "{}",
        "metadata": "{}",
        "terminated_at_0": "",
        "terminated_at_1": "",
    }
    for prefix in ("policy", "child_states", "failures", "restarts"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    data.update(overrides)
    return data


def post_node(client, data, node=None):
    """Post the add form, or the change form with the values it was loaded with (as a browser would)."""
    if node is None:
        return client.post(reverse("admin:supervision_supervisionnode_add"), data)
    url = reverse("admin:supervision_supervisionnode_change", args=[node.pk])
    loaded = client.get(url).context["adminform"].form["loaded_values"].value()
    return client.post(url, {"loaded_values": loaded, **data})


def test_add_node_through_the_form_is_logged(admin_client, admin_user):
    response = post_node(admin_client, node_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    node = SupervisionNode.objects.get(node_id="form-node")
    assert LogEntry.objects.filter(object_id=str(node.pk), user=admin_user).exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"node_type": "RootSupervisor", "node_type_detail": "x"}, "node_type_detail", "no type detail"),
        ({"node_type_detail": ""}, "node_type_detail", "needs a type detail"),
        ({"node_type": "Worker"}, "agent", "must be linked to an agent"),
        ({"node_type": "Wizard"}, "node_type", "Select a valid choice"),
        ({"configuration": "{broken"}, "configuration", "Enter a valid JSON"),
        ({"status": "sleeping"}, "status", "Select a valid choice"),
    ],
)
def test_bad_node_input_is_a_form_error_on_the_right_field(admin_client, overrides, field, message):
    response = post_node(admin_client, node_form(**overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not SupervisionNode.objects.filter(node_id="form-node").exists()


def test_service_node_with_an_agent_is_refused(admin_client):
    agent = Agent.objects.create(name="a")
    response = post_node(admin_client, node_form(agent=str(agent.pk)))
    assert "cannot be linked to an agent" in " ".join(response.context["adminform"].form.errors["agent"])


def test_a_parent_cycle_is_refused(admin_client):
    root = SupervisionNode.objects.create(node_id="cyc-a", node_type="Service", node_type_detail="x")
    child = SupervisionNode.objects.create(node_id="cyc-b", node_type="Service", node_type_detail="x", parent=root)
    grandchild = SupervisionNode.objects.create(
        node_id="cyc-c", node_type="Service", node_type_detail="x", parent=child
    )
    response = post_node(admin_client, node_form(node_id="cyc-a", parent=str(grandchild.pk)), node=root)
    assert response.status_code == 200
    assert "cycle" in " ".join(response.context["adminform"].form.errors["parent"])
    root.refresh_from_db()
    assert root.parent_id is None


def policy_form(node, **overrides) -> dict:
    data = {
        "node": str(node.pk),
        "supervision_strategy": "OneForOne",
        "max_restarts": "5",
        "time_window_seconds": "60",
        "backoff_strategy": "Exponential",
        "backoff_factor": "2.00",
        "min_restart_delay_ms": "100",
        "max_restart_delay_ms": "30000",
        "escalate_on_limit": "on",
        "escalate_on_error_types": "",
        "escalation_timeout_seconds": "10",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_restart_delay_ms": "50"}, "max_restart_delay_ms"),
        ({"backoff_factor": "1.00"}, "backoff_factor"),
        ({"max_restarts": "-1"}, "max_restarts"),
        ({"time_window_seconds": "0"}, "time_window_seconds"),
        ({"max_restarts": "ten"}, "max_restarts"),
        ({"backoff_factor": "123.456"}, "backoff_factor"),
        ({"escalate_on_error_types": "Crash,Gremlins"}, "escalate_on_error_types"),
        ({"max_restarts": "99999999999"}, "max_restarts"),
        ({"escalation_timeout_seconds": "0"}, "escalation_timeout_seconds"),
        ({"escalation_timeout_seconds": "-5"}, "escalation_timeout_seconds"),
    ],
)
def test_bad_policy_input_is_a_form_error(admin_client, overrides, field):
    node = SupervisionNode.objects.create(node_id="pol", node_type="RootSupervisor")
    response = admin_client.post(reverse("admin:supervision_supervisionpolicy_add"), policy_form(node, **overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not SupervisionPolicy.objects.exists()


def test_the_escalation_timeout_must_be_positive_in_the_node_page_inline_too(admin_client):
    data = node_form(node_id="esc")
    data.update({"policy-TOTAL_FORMS": "1", "policy-INITIAL_FORMS": "0", "policy-MAX_NUM_FORMS": "1"})
    policy = policy_form(SupervisionNode(), escalation_timeout_seconds="0")
    data.update({f"policy-0-{name}": value for name, value in policy.items() if name != "node"})
    response = post_node(admin_client, data)
    assert response.status_code == 200
    formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "policy")
    assert "at least 1 second" in " ".join(formset.formset.forms[0].errors["escalation_timeout_seconds"])
    assert not SupervisionNode.objects.filter(node_id="esc").exists()


ADD_PAGES = [f"supervision_{model}" for model in MODELS] + [
    f"agents_{model}" for model in ("agent", "agentinstance", "interactivesession", "sessionmessage")
]


@pytest.mark.parametrize("model", ADD_PAGES)
def test_add_pages_print_no_database_default_object(admin_client, model):
    page = admin_client.get(reverse(f"admin:{model}_add"))
    assert page.status_code == 200
    assert "DatabaseDefault" not in page.content.decode()


def test_the_add_node_form_starts_from_the_schemas_defaults(admin_client):
    form = admin_client.get(reverse("admin:supervision_supervisionnode_add")).context["adminform"].form
    assert form["status"].value() == "inactive"
    assert form["configuration"].value() == "{}" and form["metadata"].value() == "{}"


def test_policy_edit_is_saved_and_logged(admin_client, admin_user):
    node = SupervisionNode.objects.create(node_id="pol2", node_type="RootSupervisor")
    response = admin_client.post(
        reverse("admin:supervision_supervisionpolicy_add"), policy_form(node, backoff_strategy="Linear")
    )
    assert response.status_code == 302
    policy = SupervisionPolicy.objects.get(node=node)
    assert policy.restart_delays(3) == [1100, 2100, 3100]
    assert LogEntry.objects.filter(object_id=str(policy.pk), user=admin_user).exists()


def test_overlong_failure_detail_is_a_form_error(admin_client):
    node = SupervisionNode.objects.create(node_id="f", node_type="RootSupervisor")
    data = {
        "node": str(node.pk),
        "failure_reason": "Crash",
        "failure_detail": "x" * 5001,
        "context": "{}",
        "occurred_at_0": "2026-01-01",
        "occurred_at_1": "00:00:00",
    }
    response = admin_client.post(reverse("admin:supervision_supervisionfailure_add"), data)
    assert response.status_code == 200
    assert "failure_detail" in response.context["adminform"].form.errors
    assert not SupervisionFailure.objects.exists()


def test_restart_completion_pair_is_a_form_error(admin_client):
    node = SupervisionNode.objects.create(node_id="r", node_type="RootSupervisor")
    data = {
        "node": str(node.pk),
        "restart_attempt_number": "1",
        "restart_delay_ms": "100",
        "started_at_0": "2026-01-01",
        "started_at_1": "00:00:00",
        "success": "true",
    }
    response = admin_client.post(reverse("admin:supervision_supervisionrestart_add"), data)
    assert response.status_code == 200
    assert (
        "success" in response.context["adminform"].form.errors
        or "completed_at" in response.context["adminform"].form.errors
    )
    assert not SupervisionRestart.objects.exists()


@pytest.mark.parametrize("params", [{}, {"failure_reason__exact": "Crash"}, {"occurred_at__year": "2026"}])
def test_failures_changelist_query_count_does_not_grow_with_rows(
    admin_client, django_assert_max_num_queries, params, settings
):
    settings.ADMIN_EXACT_COUNT_LIMIT = 100  # above it the count is the planner's estimate
    demo.seed(prefix="qc", nodes=50, failures=3000, hive=False)
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("admin:supervision_supervisionfailure_changelist"), params)
    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.result_count > 100
    assert len(cl.result_list) == 50


def test_node_page_shows_only_the_latest_history(admin_client, installation):
    node = SupervisionFailure.objects.values("node").order_by().annotate().first()["node"]
    response = admin_client.get(reverse("admin:supervision_supervisionnode_change", args=[node]))
    assert response.status_code == 200
    formsets = {f.formset.prefix: f for f in response.context["inline_admin_formsets"]}
    assert len(formsets["failures"].formset.forms) <= 10


def test_delay_preview_answers_for_unsaved_settings(admin_client):
    url = reverse("admin:supervision_supervisionpolicy_delays")
    ok = admin_client.get(
        url,
        {
            "backoff_strategy": "Fixed",
            "backoff_factor": "2",
            "min_restart_delay_ms": "250",
            "max_restart_delay_ms": "900",
        },
    )
    assert ok.json() == {"delays": [250] * 8}
    bad = admin_client.get(
        url,
        {
            "backoff_strategy": "Exponential",
            "backoff_factor": "0.5",
            "min_restart_delay_ms": "9",
            "max_restart_delay_ms": "1",
        },
    )
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"backoff_factor", "max_restart_delay_ms"}


def test_delay_preview_needs_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x-pass-123", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:supervision_supervisionpolicy_delays")).status_code == 403


def test_runtime_owned_failure_fields_are_read_only_once_written(admin_client):
    node = SupervisionNode.objects.create(node_id="ro", node_type="RootSupervisor")
    failure = SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail="original")
    url = reverse("admin:supervision_supervisionfailure_change", args=[failure.pk])
    form = admin_client.get(url).context["adminform"].form
    assert "failure_detail" not in form.fields and "recovery_action" in form.fields
    response = admin_client.post(url, {"failure_detail": "rewritten", "recovery_action": "manual restart"})
    assert response.status_code == 302
    failure.refresh_from_db()
    assert (failure.failure_detail, failure.recovery_action) == ("original", "manual restart")


def test_admin_index_links_to_the_tree(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("supervision:tree") in page and "Supervision nodes" in page
