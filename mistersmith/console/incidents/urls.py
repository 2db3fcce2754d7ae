"""URLs of the incident pages, included at /admin/incidents/ in the "incidents" namespace."""

from django.urls import path

from mistersmith.console.incidents import views

urlpatterns = [
    path("<uuid:failure_id>/", views.incident_page, name="page"),
    path("<uuid:failure_id>/json/", views.incident_json, name="json"),
]
