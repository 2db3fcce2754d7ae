"""The console's big changelists under load (issue 14, item 10): the same page for less work.

Each changelist of a big table reads a bounded number of queries whatever its row count, counts
its rows once, lists a free-text filter's values without a SELECT DISTINCT scan, and renders its
rows (checkbox, link) exactly as Django's own changelist does.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import Agent, AgentInstance
from mistersmith.simulator import demo
from mistersmith.web.admin_scale import LightChangelistMixin, LightRowsChangeList, indexed_distinct_values

pytestmark = pytest.mark.django_db

LIGHT_CHANGELISTS = [
    "agents_agent",
    "agents_agentinstance",
    "supervision_supervisionnode",
    "supervision_supervisionpolicy",
    "supervision_supervisionchildstate",
    "supervision_supervisionfailure",
    "supervision_supervisionrestart",
]


def changelist(client, name: str, params: dict | None = None):
    response = client.get(reverse(f"admin:{name}_changelist"), params or {})
    assert response.status_code == 200
    return response


def add_instances(count: int) -> None:
    agents = list(Agent.objects.all()[:count])
    AgentInstance.objects.bulk_create(AgentInstance(agent=agent, status="running", host_name=None) for agent in agents)


@pytest.mark.parametrize("name", LIGHT_CHANGELISTS)
def test_query_count_is_bounded_and_the_table_counted_once(admin_client, django_assert_max_num_queries, name):
    demo.seed(prefix="cost", nodes=300, failures=600, hive=False)
    add_instances(150)
    changelist(admin_client, name)  # warm: content types, permissions
    with django_assert_max_num_queries(8), CaptureQueriesContext(connection) as queries:
        response = changelist(admin_client, name)
    statements = [query["sql"].upper() for query in queries.captured_queries]
    assert not [sql for sql in statements if "SELECT DISTINCT" in sql], "a filter scanned the table"
    assert sum("COUNT(" in sql for sql in statements) <= 1  # no second count for "(N total)"
    cl = response.context["cl"]
    assert cl.result_count > 0 and len(cl.result_list) == min(cl.result_count, cl.list_per_page)


def test_query_count_does_not_grow_with_rows(admin_client):
    def counts() -> dict[str, int]:
        found = {}
        for name in LIGHT_CHANGELISTS:
            changelist(admin_client, name)
            with CaptureQueriesContext(connection) as queries:
                changelist(admin_client, name)
            found[name] = len(queries.captured_queries)
        return found

    demo.seed(prefix="few", nodes=30, failures=60, hive=False)
    add_instances(20)
    few = counts()
    with connection.cursor() as cursor:  # the seed's temporary tables drop at commit, which a test never reaches
        cursor.execute("DROP TABLE IF EXISTS demo_targets, demo_failures")
    demo.seed(prefix="many", nodes=400, failures=900, hive=False)
    add_instances(300)
    assert counts() == few


def test_agent_filters_list_every_value_in_order_and_still_filter(admin_client):
    demo.seed(prefix="flt", nodes=200, failures=0, hive=False)
    Agent.objects.create(name="zz-odd", agent_type="Ünïcode type", model="m-<b>x</b>")
    response = changelist(admin_client, "agents_agent")
    specs = {spec.lookup_kwarg: spec for spec in response.context["cl"].filter_specs if hasattr(spec, "lookup_kwarg")}
    for field in ["agent_type", "model"]:
        expected = list(Agent.objects.order_by(field).values_list(field, flat=True).distinct())
        assert list(specs[field].lookup_choices) == expected
    assert "m-&lt;b&gt;x&lt;/b&gt;" in response.content.decode()  # the value is escaped in the sidebar

    some_type = Agent.objects.exclude(agent_type="Ünïcode type").values_list("agent_type", flat=True).first()
    filtered = changelist(admin_client, "agents_agent", {"agent_type": some_type})
    cl = filtered.context["cl"]
    assert cl.result_count == Agent.objects.filter(agent_type=some_type).count()
    assert {agent.agent_type for agent in cl.result_list} == {some_type}
    assert "Show all" in filtered.content.decode()  # the whole table is not counted a second time


def test_indexed_values_include_null_when_the_column_holds_one():
    demo.seed(prefix="nul", nodes=40, failures=0, hive=False)
    AgentInstance.objects.all().delete()
    agents = list(Agent.objects.all()[:3])
    AgentInstance.objects.create(agent=agents[0], host_name="b-host", port=2)
    AgentInstance.objects.create(agent=agents[1], host_name="a-host", port=1)
    field = AgentInstance._meta.get_field("host_name")
    assert indexed_distinct_values(AgentInstance, field) == ["a-host", "b-host"]
    AgentInstance.objects.create(agent=agents[2], host_name=None)
    assert indexed_distinct_values(AgentInstance, field) == ["a-host", "b-host", None]
    assert indexed_distinct_values(AgentInstance, AgentInstance._meta.get_field("port")) == [1, 2, None]
    AgentInstance.objects.all().delete()
    assert indexed_distinct_values(AgentInstance, field) == []


def test_the_filters_columns_and_the_instances_order_have_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename IN ('agents', 'agent_instances')")
        names = {row[0] for row in cursor.fetchall()}
    assert {"agents_agent_type_idx", "agents_model_idx", "agent_instances_started_id_idx"} <= names


@pytest.mark.parametrize("name", ["plain", "<script>alert(1)</script> & “quotes”"])
def test_the_action_checkbox_is_djangos_own_html(name):
    agent = Agent(id=uuid.uuid4(), name=name)
    model_admin = admin.site._registry[Agent]
    assert isinstance(model_admin, LightChangelistMixin)
    assert model_admin.action_checkbox(agent) == admin.ModelAdmin.action_checkbox(model_admin, agent)


@pytest.mark.parametrize("key", [uuid.uuid4(), "a/b_c:d?e#f é 100%", "_x"])
def test_row_links_are_what_reverse_writes(admin_user, key):
    request = RequestFactory().get("/admin/agents/agent/")
    request.user = admin_user
    cl = admin.site._registry[Agent].get_changelist_instance(request)
    assert isinstance(cl, LightRowsChangeList)
    agent = Agent(name="linked")
    agent.id = key
    assert cl.url_for_result(agent) == reverse("admin:agents_agent_change", args=(quote(key),))


def test_rows_link_to_their_change_pages(admin_client):
    demo.seed(prefix="lnk", nodes=20, failures=0, hive=False)
    response = changelist(admin_client, "agents_agent")
    page = response.content.decode()
    for agent in response.context["cl"].result_list:
        assert f'href="{reverse("admin:agents_agent_change", args=[agent.pk])}"' in page
        assert f'value="{agent.pk}" class="action-select"' in page
