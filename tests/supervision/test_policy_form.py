"""The policy form teaches: help on every field, the error types as choices stored in the runtime's
column format, the backoff factor refused where it does not act, the history telling old → new,
and a policy's label naming its node. Through the admin's real views and PostgreSQL."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse

from supervision.models import FailureReason, SupervisionNode, SupervisionPolicy
from supervision.policy_form import HELP_TEXTS
from tests.supervision.test_admin import node_form, policy_form
from tests.supervision.test_admin_concurrency import loaded_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    return SupervisionNode.objects.create(
        node_id="payments-sup", node_type="Service", node_type_detail="db", status="active"
    )


@pytest.fixture
def policy(node):
    return SupervisionPolicy.objects.create(node=node)


def change_url(policy: SupervisionPolicy) -> str:
    return reverse("admin:supervision_supervisionpolicy_change", args=[policy.pk])


def stored_error_types(policy: SupervisionPolicy) -> list[str]:
    """The column as the runtime reads it (TEXT[]), not through the model."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT escalate_on_error_types FROM supervision_policies WHERE id = %s", [policy.pk])
        return cursor.fetchone()[0]


def test_every_field_of_the_policy_form_has_help(admin_client, policy):
    form = admin_client.get(change_url(policy)).context["adminform"].form
    editable = [name for name, field in form.fields.items() if not field.widget.is_hidden]
    assert set(editable) == set(HELP_TEXTS)
    for name in editable:
        assert len(form.fields[name].help_text) > 20, name
    page = admin_client.get(change_url(policy)).content.decode()
    assert "Used only by Exponential backoff" in page


def test_error_types_are_checkboxes_of_the_known_failure_reasons(admin_client, policy):
    page = admin_client.get(change_url(policy)).content.decode()
    for reason in FailureReason.values:
        assert f'type="checkbox" name="escalate_on_error_types" value="{reason}"' in page


def test_ticked_error_types_are_stored_in_the_runtimes_format(admin_client, node, policy):
    data = policy_form(node, loaded_values=loaded_values(admin_client, change_url(policy)))
    data["escalate_on_error_types"] = ["Crash", "ResourceExhaustion"]
    response = admin_client.post(change_url(policy), data)
    assert response.status_code == 302
    assert stored_error_types(policy) == ["Crash", "ResourceExhaustion"]
    # The text form the field took before still reads (a script posting "A,B").
    data["loaded_values"] = loaded_values(admin_client, change_url(policy))
    data["escalate_on_error_types"] = "HeartbeatTimeout, UnhandledError"
    assert admin_client.post(change_url(policy), data).status_code == 302
    assert stored_error_types(policy) == ["HeartbeatTimeout", "UnhandledError"]


def test_an_unknown_error_type_the_runtime_stored_is_shown_and_named(admin_client, node, policy):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE supervision_policies SET escalate_on_error_types = '{Crash,Gremlins}' WHERE id = %s", [policy.pk]
        )
    response = admin_client.get(change_url(policy))
    page = response.content.decode()
    assert "Gremlins (unknown to the console)" in page
    assert 'value="Gremlins"' in page and "checked" in page.split('value="Gremlins"')[1][:80]
    data = policy_form(node, loaded_values=loaded_values(admin_client, change_url(policy)))
    data["escalate_on_error_types"] = ["Crash", "Gremlins"]
    response = admin_client.post(change_url(policy), data)
    assert response.status_code == 200
    assert "Unknown failure reasons: Gremlins" in " ".join(
        response.context["adminform"].form.errors["escalate_on_error_types"]
    )
    assert stored_error_types(policy) == ["Crash", "Gremlins"]  # nothing written


@pytest.mark.parametrize("strategy", ["Linear", "Fixed"])
def test_a_changed_factor_is_refused_where_it_does_not_act(admin_client, node, policy, strategy):
    data = policy_form(node, backoff_strategy=strategy, backoff_factor="3.00")
    data["loaded_values"] = loaded_values(admin_client, change_url(policy))
    response = admin_client.post(change_url(policy), data)
    assert response.status_code == 200
    error = " ".join(response.context["adminform"].form.errors["backoff_factor"])
    assert f"acts only with Exponential backoff; {strategy} backoff ignores it" in error
    assert "leave it at 2.00" in error
    policy.refresh_from_db()
    assert policy.backoff_strategy == "Exponential"


def test_an_unchanged_factor_is_kept_with_another_backoff_and_a_changed_one_acts_with_exponential(
    admin_client, node, policy
):
    data = policy_form(node, backoff_strategy="Linear", backoff_factor="2.00")
    data["loaded_values"] = loaded_values(admin_client, change_url(policy))
    assert admin_client.post(change_url(policy), data).status_code == 302
    policy.refresh_from_db()
    assert (policy.backoff_strategy, str(policy.backoff_factor)) == ("Linear", "2.00")
    data = policy_form(node, backoff_strategy="Exponential", backoff_factor="3.00")
    data["loaded_values"] = loaded_values(admin_client, change_url(policy))
    assert admin_client.post(change_url(policy), data).status_code == 302
    policy.refresh_from_db()
    assert str(policy.backoff_factor) == "3.00"


def test_the_history_shows_old_and_new_values(admin_client, node, policy):
    data = policy_form(node, max_restarts="7", backoff_strategy="Linear", escalate_on_limit="")
    data["escalate_on_error_types"] = ["Crash"]
    data["loaded_values"] = loaded_values(admin_client, change_url(policy))
    assert admin_client.post(change_url(policy), data).status_code == 302
    entry = LogEntry.objects.get(object_id=str(policy.pk))
    assert entry.get_change_message() == (
        "Changed Max restarts: 5 → 7, Backoff strategy: Exponential → Linear, Escalate on limit: yes → no "
        "and Escalate on error types: (none) → Crash."
    )
    history = admin_client.get(reverse("admin:supervision_supervisionpolicy_history", args=[policy.pk]))
    assert "Max restarts: 5 → 7" in history.content.decode()
    assert "Policy of payments-sup" in history.content.decode()


def test_the_node_pages_policy_inline_logs_old_and_new_values(admin_client, node, policy):
    url = reverse("admin:supervision_supervisionnode_change", args=[node.pk])
    data = node_form(node_id=node.node_id, loaded_values=loaded_values(admin_client, url))
    data.update({"policy-TOTAL_FORMS": "1", "policy-INITIAL_FORMS": "1", "policy-MAX_NUM_FORMS": "1"})
    inline = policy_form(
        node, time_window_seconds="120", loaded_values=loaded_values(admin_client, url, prefix="policy")
    )
    data.update({f"policy-0-{name}": value for name, value in inline.items() if name != "node"})
    data.update({"policy-0-id": str(policy.pk), "policy-0-node": str(node.pk)})
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    entry = LogEntry.objects.filter(object_id=str(node.pk)).latest("action_time")
    assert "Time window seconds: 60 → 120 for supervision policy “Policy of payments-sup" in entry.get_change_message()


def test_a_policys_label_names_its_node(admin_client, node, policy):
    assert str(policy) == "Policy of payments-sup: OneForOne, 5 in 60s, Exponential"
    assert str(SupervisionPolicy()) == "Policy: OneForOne, 5 in 60s, Exponential"
    page = admin_client.get(change_url(policy)).content.decode()
    assert "Policy of payments-sup" in page  # the change page's title and breadcrumbs


def test_a_view_only_user_sees_the_policy_read_only(client, django_user_model, policy):
    user = django_user_model.objects.create_user("policy-viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_supervisionpolicy"))
    client.force_login(user)
    response = client.get(change_url(policy))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Policy of payments-sup" in page
    assert 'name="escalate_on_error_types"' not in page and 'name="backoff_factor"' not in page
