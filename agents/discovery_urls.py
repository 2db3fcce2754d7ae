"""URLs of the discoveries live page, at /admin/discoveries/ in the "discovery_pages" namespace."""

from django.urls import path

from agents.views.discoveries import discovery_live, discovery_snapshot

urlpatterns = [
    path("", discovery_live, name="page"),
    path("snapshot/", discovery_snapshot, name="snapshot"),
]
