"""URLs of the discoveries live page, at /admin/discoveries/ in the "discovery_pages" namespace."""

from django.urls import path

from agents.discovery_page import discovery_live_view, discovery_snapshot_view

urlpatterns = [
    path("", discovery_live_view, name="page"),
    path("snapshot/", discovery_snapshot_view, name="snapshot"),
]
