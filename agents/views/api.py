"""The discovery store's JSON endpoints (CONTRACTS.md §4): a plain array, and the paged shape the
runtime's monitoring UI expects. Login and the view permission are required; bad filters get 400."""

from __future__ import annotations

import math

from django.http import HttpRequest, JsonResponse

from agents import discoveries
from mistersmith.web.access import json_endpoint

MAX_PAGE_SIZE = 200

# 401/403 as JSON for API clients, instead of a redirect to a login form; they need not be staff.
json_login_required = json_endpoint("agents.view_discovery", staff=False)


def _filter(request: HttpRequest) -> discoveries.DiscoveryFilter | JsonResponse:
    try:
        return discoveries.DiscoveryFilter.from_query(request.GET)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)


@json_login_required
def discovery_list(request: HttpRequest) -> JsonResponse:
    found = _filter(request)
    if isinstance(found, JsonResponse):
        return found
    return JsonResponse([d.as_contract() for d in discoveries.search(found)], safe=False)


MAX_PAGE = 1_000_000  # the store holds 1,000: a bound that keeps the OFFSET inside PostgreSQL's bigint


def _positive(value: str | None, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 7 or not 1 <= int(value) <= MAX_PAGE:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_PAGE}.")
    return int(value)


@json_login_required
def discovery_page(request: HttpRequest) -> JsonResponse:
    found = _filter(request)
    if isinstance(found, JsonResponse):
        return found
    try:
        page = _positive(request.GET.get("page"), 1, "page")
        size = min(_positive(request.GET.get("pageSize"), 20, "pageSize"), MAX_PAGE_SIZE)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    matching = discoveries.search(found)
    total = matching.count()
    data = [d.as_contract() for d in matching[(page - 1) * size : page * size]]
    return JsonResponse(
        {"data": data, "total": total, "page": page, "pageSize": size, "totalPages": math.ceil(total / size)}
    )
