"""URLs of a person's recent actions, included at /admin/actions/ in the "actions" namespace."""

from django.urls import path

from mistersmith.console.actions import views

urlpatterns = [path("mine/", views.mine, name="mine")]
