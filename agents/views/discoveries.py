"""The discoveries live page: the store's newest discoveries under the runtime's subscription
filter, then every new one that matches, pushed through the socket with the same filter."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from agents import discoveries
from agents.models import DiscoveryType
from mistersmith.live.positions import stream_positions
from mistersmith.web.access import admin_page, live_page_context
from mistersmith.web.links import agent_link_templates

SNAPSHOT_SIZE = 100
PERMISSION = "agents.view_discovery"


@admin_page(PERMISSION)
def discovery_live(request: HttpRequest) -> HttpResponse:
    context = live_page_context(
        request,
        "Discoveries",
        types=DiscoveryType.values,
        chosen_types=[t for t in request.GET.get("types", "").split(",") if t],
        query=request.GET,
        snapshot_size=SNAPSHOT_SIZE,
        capacity=discoveries.CAPACITY,
        agent_links=agent_link_templates(request.user),
    )
    return TemplateResponse(request, "agents/discovery_live.html", context)


@admin_page(PERMISSION)
def discovery_snapshot(request: HttpRequest) -> JsonResponse:
    """The newest matching discoveries, the store's stats and the stream position they reflect."""
    try:
        found = discoveries.DiscoveryFilter.from_query(request.GET)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    with transaction.atomic():
        matching = discoveries.search(found)
        newest = [d.as_contract() for d in matching[:SNAPSHOT_SIZE]]
        return JsonResponse(
            {
                "discoveries": newest,
                "matching": matching.count(),
                "stats": discoveries.stats(),
                "positions": stream_positions(),
            }
        )
