"""URLs of the dashboard live page, included at /admin/live/ in the "dashboard" namespace."""

from django.urls import path

from mistersmith.console.dashboard import views

urlpatterns = [
    path("", views.page, name="page"),
    path("snapshot/", views.snapshot, name="snapshot"),
    path("freshness/", views.freshness, name="freshness"),
    path("charts/", views.charts, name="charts"),
]
