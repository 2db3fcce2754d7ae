"""Supervision pages inside the admin: the tree view and restarts (namespace "supervision")."""

from django.contrib import admin
from django.urls import include, path

from supervision import views

app_name = "supervision"

urlpatterns = [
    # admin_view: login (and staff) required, CSRF on, never cached; the view checks the permission.
    path("restart/<uuid:node_pk>/", admin.site.admin_view(views.restart_node), name="restart"),
    path("tree/", include("supervision.tree_urls")),
]
