"""URLs of the live agents pages, included at /admin/agents/live/ in the "agent_pages" namespace."""

from django.urls import path

from agents.views import bulk
from agents.views import pages as views

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("snapshot/", views.agent_list_snapshot, name="list_snapshot"),
    path("<uuid:agent_id>/", views.agent_detail, name="detail"),
    path("<uuid:agent_id>/tree/", views.agent_in_tree, name="tree"),
    path("<uuid:agent_id>/snapshot/", views.agent_detail_snapshot, name="detail_snapshot"),
    path("<uuid:agent_id>/command/", views.agent_command, name="command"),
    path("<uuid:agent_id>/text/", views.agent_text, name="text"),
    path("<uuid:agent_id>/payload/", views.agent_payload, name="payload"),
    path("bulk/", bulk.bulk_command, name="bulk"),
    path("bulk/<uuid:run_id>/", bulk.bulk_run, name="bulk_run"),
    path("bulk/<uuid:run_id>/results/", bulk.bulk_results, name="bulk_results"),
]
