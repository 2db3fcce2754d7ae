"""URLs of the event log, included at /admin/events/ in the "event_log" namespace."""

from django.urls import path

from mistersmith.console.event_log import views

urlpatterns = [
    path("", views.event_log_page, name="page"),
    path("snapshot", views.event_log_snapshot, name="snapshot"),
    path("replay", views.event_log_replay, name="replay"),
    path("message", views.event_log_message, name="message"),
]
