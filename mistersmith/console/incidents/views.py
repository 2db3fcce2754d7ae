"""The incident page and its JSON export: thin shells over :func:`.story.incident_story`.

Access: staff with ``supervision.view_supervisionfailure`` (the story starts from a failure); the
parts needing other models' view permissions are hidden inside the story. The page sends
anonymous users to the login form; the export answers 401/403 as JSON, like every JSON endpoint.
"""

from __future__ import annotations

import json
import uuid

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from mistersmith.console.incidents.story import incident_story
from mistersmith.web.access import SAFE_METHODS, admin_page, json_endpoint

PERMISSION = "supervision.view_supervisionfailure"


@admin_page(PERMISSION)
def incident_page(request: HttpRequest, failure_id: uuid.UUID) -> HttpResponse:
    """One failure's story as a timeline."""
    story = incident_story(request, failure_id)
    if story is None:
        raise Http404("No such failure (it may have been pruned).")
    failure = story["failure"]
    context = {
        **admin.site.each_context(request),
        "title": f"Incident: {failure['failure_reason']} on {failure['node']['name']}",
        "story": story,
        "json_url": reverse("incidents:json", args=[failure_id]),
    }
    return TemplateResponse(request, "mistersmith/incident.html", context)


@json_endpoint(PERMISSION, methods=SAFE_METHODS)
def incident_json(request: HttpRequest, failure_id: uuid.UUID) -> HttpResponse:
    """The same story as one JSON document, as a download."""
    story = incident_story(request, failure_id)
    if story is None:
        return JsonResponse({"error": "No such failure (it may have been pruned)."}, status=404)
    response = HttpResponse(json.dumps(story, cls=DjangoJSONEncoder, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="incident-{failure_id}.json"'
    return response
