"""URLs of the snapshot page, included at /admin/state/snapshots/ in the "snapshots" namespace."""

from django.urls import path

from mistersmith.operations.snapshots import views as snapshot_views

urlpatterns = [
    path("", snapshot_views.snapshot_list, name="list"),
    path("compare/", snapshot_views.snapshot_compare, name="compare"),
    path("compare.json", snapshot_views.snapshot_compare_json, name="compare_json"),
    path("<str:name>/download", snapshot_views.snapshot_download, name="download"),
    path("<str:name>/restore", snapshot_views.snapshot_restore, name="restore"),
]
