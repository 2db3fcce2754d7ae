"""Supervision pages inside the admin: the tree view and restarts (namespace "supervision")."""

from django.urls import include, path

from supervision.views import backtest
from supervision.views import restart as views

app_name = "supervision"

urlpatterns = [
    # An admin page (mistersmith.web.access): login and staff, the restart permission, CSRF, never cached.
    path("restart/<uuid:node_pk>/", views.restart_node, name="restart"),
    path("tree/", include("supervision.tree_urls")),
    # JSON for the policy form's backtest panel (staff, view of policies and of failures; read-only).
    path("policy-backtest/", backtest.policy_backtest, name="policy_backtest"),
]
