"""Node and policy forms refuse to save over a row that changed since they were loaded, show
what changed, and write nothing; saving again, having seen it, keeps the user's values."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.urls import reverse

from supervision.models import SupervisionNode, SupervisionPolicy
from tests.supervision.test_admin import node_form, policy_form

pytestmark = pytest.mark.django_db


def loaded_values(client, url: str, prefix: str = "") -> str:
    """The hidden fingerprint of the values the form was loaded with, as the browser would send it."""
    response = client.get(url)
    assert response.status_code == 200
    if not prefix:
        return response.context["adminform"].form["loaded_values"].value()
    formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == prefix)
    return formset.formset.forms[0]["loaded_values"].value()


def runtime_sql(sql: str, params: list) -> None:
    """Write as the runtime does: plain SQL, no Django model in between."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def form_errors(response) -> str:
    return " ".join(response.context["adminform"].form.non_field_errors())


@pytest.fixture
def service_node() -> SupervisionNode:
    return SupervisionNode.objects.create(
        node_id="cc-node", node_type="Service", node_type_detail="db", status="active", metadata={"owner": "ops"}
    )


def test_a_node_changed_since_loading_is_not_overwritten(admin_client, service_node):
    url = reverse("admin:supervision_supervisionnode_change", args=[service_node.pk])
    loaded = loaded_values(admin_client, url)
    runtime_sql(
        "UPDATE supervision_nodes SET status = 'failed'::node_status, configuration = %s WHERE id = %s",
        ['{"restarts": 3}', service_node.pk],
    )

    mine = node_form(node_id="cc-node", metadata='{"owner": "me"}', loaded_values=loaded)
    response = admin_client.post(url, mine)

    assert response.status_code == 200
    errors = form_errors(response)
    assert "changed since the form was loaded; nothing was saved" in errors
    assert "Status: your value active / the value now failed" in errors
    assert 'Configuration: your value {} / the value now {"restarts": 3}' in errors
    assert "Metadata" not in errors  # only the user changed it
    service_node.refresh_from_db()
    assert (service_node.status, service_node.configuration, service_node.metadata) == (
        "failed",
        {"restarts": 3},
        {"owner": "ops"},
    )

    # Having seen the changes, saving again keeps the user's values.
    renewed = response.context["adminform"].form["loaded_values"].value()
    assert renewed != loaded
    again = admin_client.post(url, {**mine, "loaded_values": renewed})
    assert again.status_code == 302
    service_node.refresh_from_db()
    assert (service_node.status, service_node.metadata) == ("active", {"owner": "me"})


def test_a_node_unchanged_since_loading_saves(admin_client, service_node):
    url = reverse("admin:supervision_supervisionnode_change", args=[service_node.pk])
    loaded = loaded_values(admin_client, url)
    # An UPDATE that changes nothing the form shows (the trigger still moves updated_at).
    runtime_sql("UPDATE supervision_nodes SET status = status WHERE id = %s", [service_node.pk])
    response = admin_client.post(
        url, node_form(node_id="cc-node", metadata='{"owner": "me"}', status="inactive", loaded_values=loaded)
    )
    assert response.status_code == 302
    service_node.refresh_from_db()
    assert (service_node.status, service_node.metadata) == ("inactive", {"owner": "me"})


@pytest.mark.parametrize("loaded", [None, "", "not json", "[1, 2]"])
def test_a_form_without_its_loaded_values_is_refused(admin_client, service_node, loaded):
    url = reverse("admin:supervision_supervisionnode_change", args=[service_node.pk])
    data = node_form(node_id="cc-node", status="terminated")
    if loaded is not None:
        data["loaded_values"] = loaded
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "does not say which values it was loaded with" in form_errors(response)
    service_node.refresh_from_db()
    assert service_node.status == "active"


def test_a_policy_changed_since_loading_is_not_overwritten(admin_client, service_node):
    policy = SupervisionPolicy.objects.create(node=service_node)
    url = reverse("admin:supervision_supervisionpolicy_change", args=[policy.pk])
    loaded = loaded_values(admin_client, url)
    # The runtime's upsert of the node's policy.
    runtime_sql(
        """INSERT INTO supervision_policies (node_id, supervision_strategy, max_restarts, time_window_seconds,
               backoff_strategy, backoff_factor, min_restart_delay_ms, max_restart_delay_ms)
           VALUES (%s, 'OneForAll'::supervision_strategy, 9, 60, 'Exponential'::backoff_strategy, 2.0, 100, 30000)
           ON CONFLICT (node_id) DO UPDATE SET supervision_strategy = EXCLUDED.supervision_strategy,
               max_restarts = EXCLUDED.max_restarts""",
        [service_node.pk],
    )

    response = admin_client.post(url, policy_form(service_node, backoff_strategy="Linear", loaded_values=loaded))

    assert response.status_code == 200
    errors = form_errors(response)
    assert "Max restarts: your value 5 / the value now 9" in errors
    assert "Supervision strategy: your value OneForOne / the value now OneForAll" in errors
    assert "Backoff strategy" not in errors
    policy.refresh_from_db()
    assert (policy.max_restarts, policy.supervision_strategy, policy.backoff_strategy) == (
        9,
        "OneForAll",
        "Exponential",
    )


def test_a_policy_unchanged_since_loading_saves(admin_client, service_node):
    policy = SupervisionPolicy.objects.create(node=service_node)
    url = reverse("admin:supervision_supervisionpolicy_change", args=[policy.pk])
    loaded = loaded_values(admin_client, url)
    response = admin_client.post(url, policy_form(service_node, backoff_strategy="Linear", loaded_values=loaded))
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.backoff_strategy == "Linear"
    entry = LogEntry.objects.get(object_id=str(policy.pk))
    # the hidden field is no change; the value moved is told old -> new (supervision/policy_form.py)
    assert entry.get_change_message() == "Changed Backoff strategy: Exponential → Linear."


def test_the_policy_inline_on_the_node_page_is_guarded_too(admin_client, service_node):
    policy = SupervisionPolicy.objects.create(node=service_node)
    url = reverse("admin:supervision_supervisionnode_change", args=[service_node.pk])
    node_loaded = loaded_values(admin_client, url)
    policy_loaded = loaded_values(admin_client, url, prefix="policy")
    runtime_sql("UPDATE supervision_policies SET max_restarts = 7 WHERE id = %s", [policy.pk])

    data = node_form(node_id="cc-node", loaded_values=node_loaded)
    data.update({"policy-TOTAL_FORMS": "1", "policy-INITIAL_FORMS": "1", "policy-MAX_NUM_FORMS": "1"})
    inline = policy_form(service_node, max_restarts="2", loaded_values=policy_loaded)
    data.update({f"policy-0-{name}": value for name, value in inline.items() if name != "node"})
    data.update({"policy-0-id": str(policy.pk), "policy-0-node": str(service_node.pk)})
    response = admin_client.post(url, data)

    assert response.status_code == 200
    formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "policy")
    errors = " ".join(formset.formset.forms[0].non_field_errors())
    assert "Max restarts: your value 2 / the value now 7" in errors
    policy.refresh_from_db()
    assert policy.max_restarts == 7
