"""URLs of the saved views, included at /admin/views/ in the "saved_views" namespace."""

from django.urls import path

from mistersmith.console.saved_views import views

urlpatterns = [
    path("", views.saved_views, name="list"),
    path("<int:view_id>/", views.saved_view, name="detail"),
]
