from pathlib import Path

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from agents.views import api as agent_views
from mistersmith.operations.metrics.view import metrics_view
from mistersmith.operations.verify.views import readyz


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Readiness (database, NATS, channel layer) is /readyz."""
    return HttpResponse("ok", content_type="text/plain")


FAVICON = Path(__file__).resolve().parent / "live" / "static" / "mistersmith" / "favicon.ico"


def favicon(request: HttpRequest) -> HttpResponse:
    """The icon browsers ask for on every page (/favicon.ico): public, cached for a day, never a 404."""
    response = HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),  # unauthenticated: component names and ok/failed only
    path("metrics", metrics_view, name="metrics"),  # network- or token-restricted (docs/metrics.md)
    path("discoveries", agent_views.discovery_list, name="discoveries"),
    path("api/v1/discoveries", agent_views.discovery_page, name="discoveries-api"),
    # Before admin.site.urls: custom admin pages under the app's own prefix, and the live pages.
    path("admin/supervision/", include("supervision.urls")),
    path("admin/live/", include(("mistersmith.console.dashboard.urls", "dashboard"))),
    path("admin/incidents/", include(("mistersmith.console.incidents.urls", "incidents"))),
    path("admin/events/", include(("mistersmith.console.event_log.urls", "event_log"))),
    path("admin/actions/", include(("mistersmith.console.actions.urls", "actions"))),
    path("admin/views/", include(("mistersmith.console.saved_views.urls", "saved_views"))),
    path("admin/agents/live/", include(("agents.page_urls", "agent_pages"))),
    path("admin/discoveries/", include(("agents.discovery_urls", "discovery_pages"))),
    path("admin/state/", include(("mistersmith.operations.verify.urls", "verify_state"))),
    path("admin/state/snapshots/", include(("mistersmith.operations.snapshots.urls", "snapshots"))),
    path("admin/", admin.site.urls),
]

handler500 = "mistersmith.web.unavailable.server_error"

admin.site.site_header = "MisterSmith console"
admin.site.site_title = "MisterSmith"
admin.site.index_title = "Operations"
