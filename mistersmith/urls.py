from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from agents import views as agent_views


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Readiness checks come with the verification matrix."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("discoveries", agent_views.discovery_list, name="discoveries"),
    path("api/v1/discoveries", agent_views.discovery_page, name="discoveries-api"),
    # Before admin.site.urls: custom admin pages under the app's own prefix, and the live pages.
    path("admin/supervision/", include("supervision.urls")),
    path("admin/live/", include(("mistersmith.dashboard_urls", "dashboard"))),
    path("admin/events/", include(("mistersmith.event_log_urls", "event_log"))),
    path("admin/agents/live/", include(("agents.page_urls", "agent_pages"))),
    path("admin/discoveries/", include(("agents.discovery_urls", "discovery_pages"))),
    path("admin/", admin.site.urls),
]

admin.site.site_header = "MisterSmith console"
admin.site.site_title = "MisterSmith"
admin.site.index_title = "Operations"
