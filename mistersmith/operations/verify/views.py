"""The verification matrix for people and load balancers.

- ``/admin/state/verify/``: the report as an admin page for staff, refreshed in place every few
  seconds (verify_state.js reads the JSON endpoint); anonymous and non-staff users go to the
  admin's login page, as on every admin page.
- ``/admin/state/verify.json``: the same report as JSON for staff (401/403 as JSON otherwise, so
  a script gets a reason rather than a login form).
- ``/readyz``: readiness for load balancers, unauthenticated, so it says only which components
  are ok or failed and nothing else (no hosts, versions or errors). 200 when ready, 503 when not.
  ``/healthz`` (liveness) stays in mistersmith/urls.py.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from mistersmith.operations.verify.fixes import page_rows
from mistersmith.operations.verify.matrix import DEGRADED, FAILED, OK
from mistersmith.operations.verify.report import READINESS_COMPONENTS, readiness, run
from mistersmith.web.access import SAFE_METHODS, admin_page, json_endpoint

REFRESH_SECONDS = 10
REFRESH_RANGE = (2, 300)  # ?refresh=N is kept within this


def _refresh_seconds(request: HttpRequest) -> int:
    value = request.GET.get("refresh", "")
    if not value.isdigit():
        return REFRESH_SECONDS
    low, high = REFRESH_RANGE
    return min(max(int(value), low), high)


@admin_page()
def verify_page(request: HttpRequest) -> HttpResponse:
    report = run()
    context = {
        **admin.site.each_context(request),
        "title": "State verification",
        "report": report,
        "rows": page_rows(report, request.user),  # failed and degraded first, with their fix links
        "counts": report.counts,
        "refresh_seconds": _refresh_seconds(request),
        "json_url": reverse("verify_state:json"),
        "statuses": (OK, DEGRADED, FAILED),
    }
    return TemplateResponse(request, "mistersmith/verify_state.html", context)


@json_endpoint(methods=SAFE_METHODS)
def verify_json(request: HttpRequest) -> JsonResponse:
    """The report; its rows as the page shows them (failed and degraded first, each with its fix link)."""
    report = run()
    return JsonResponse({**report.as_dict(), "rows": page_rows(report, request.user)})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    components = readiness()
    ready = all(components.get(name, False) for name in READINESS_COMPONENTS)
    body = {
        "status": "ready" if ready else "not ready",
        "components": {name: OK if components.get(name) else FAILED for name in READINESS_COMPONENTS},
    }
    return JsonResponse(body, status=200 if ready else 503)
