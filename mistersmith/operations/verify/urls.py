"""URLs of the state verification, included at /admin/state/ in the "verify_state" namespace."""

from django.urls import path

from mistersmith.operations.verify import views as verify_views

urlpatterns = [
    path("verify/", verify_views.verify_page, name="page"),
    path("verify.json", verify_views.verify_json, name="json"),
]
