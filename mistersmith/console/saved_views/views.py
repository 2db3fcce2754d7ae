"""The JSON of a person's saved views, read and changed by the Views menu of every live page
(mistersmith/live/static/mistersmith/saved_views.js).

GET lists the user's views of one page, POST saves one (a name kept already is replaced), DELETE
removes one. Each user reaches only their own: another user's view is a 404, as if absent. The
page must be one of the console's own paths and the query a plain query string, so a saved view
can never send anyone elsewhere; names are returned as data, and the menu writes them as text.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.http import require_http_methods

from mistersmith.live.models import SavedView
from mistersmith.web.access import json_endpoint

MAX_VIEWS_PER_PAGE = 50
NAME_MAX = SavedView._meta.get_field("name").max_length
PAGE_MAX = SavedView._meta.get_field("page").max_length
QUERY_MAX = SavedView._meta.get_field("query").max_length


class BadInput(ValueError):
    """Input the endpoint refuses, with the sentence the 400 answer carries."""


def _as_json(view: SavedView) -> dict[str, object]:
    return {"id": view.pk, "name": view.name, "page": view.page, "query": view.query, "url": view.url}


def _page(raw: str) -> str:
    """A path of this console's ("/admin/events/"): never another host ("//x", "https://x")."""
    page = raw.strip()
    if not page.startswith("/") or page.startswith("//") or "?" in page or "#" in page or "\\" in page:
        raise BadInput("page must be a path of this console, like /admin/events/.")
    if len(page) > PAGE_MAX:
        raise BadInput(f"page is longer than {PAGE_MAX} characters.")
    try:
        resolve(page)
    except Resolver404:
        raise BadInput("page is not a page of this console.") from None
    return page


def _name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise BadInput("name is required.")
    if len(name) > NAME_MAX:
        raise BadInput(f"name is longer than {NAME_MAX} characters.")
    return name


def _query(raw: str) -> str:
    query = raw.strip().removeprefix("?")
    if len(query) > QUERY_MAX:
        raise BadInput(f"query is longer than {QUERY_MAX} characters.")
    if "#" in query or any(ord(c) < 32 for c in query):
        raise BadInput("query must be a query string (name=value&…).")
    try:
        parse_qsl(query, strict_parsing=bool(query), max_num_fields=100)
    except ValueError:
        raise BadInput("query must be a query string (name=value&…).") from None
    return query


def _bad(problem: BadInput) -> JsonResponse:
    return JsonResponse({"error": str(problem)}, status=400)


@json_endpoint(methods=["GET", "HEAD", "POST"])
def saved_views(request: HttpRequest) -> JsonResponse:
    """GET ?page=: the user's views of that page. POST page, name, query: save (201 new, 200 replaced)."""
    try:
        if request.method == "POST":
            page = _page(request.POST.get("page", ""))
            name = _name(request.POST.get("name", ""))
            query = _query(request.POST.get("query", ""))
        else:
            page = _page(request.GET.get("page", ""))
    except BadInput as problem:
        return _bad(problem)
    mine = SavedView.objects.filter(user=request.user, page=page)
    if request.method != "POST":
        return JsonResponse({"views": [_as_json(view) for view in mine.order_by("name")[:MAX_VIEWS_PER_PAGE]]})
    with transaction.atomic():
        existing = mine.select_for_update().filter(name=name).first()
        if existing is None and mine.count() >= MAX_VIEWS_PER_PAGE:
            return _bad(BadInput(f"at most {MAX_VIEWS_PER_PAGE} saved views per page: delete one first."))
        view, created = SavedView.objects.update_or_create(
            user=request.user, page=page, name=name, defaults={"query": query}
        )
    return JsonResponse({"view": _as_json(view)}, status=201 if created else 200)


@json_endpoint()
@require_http_methods(["DELETE", "POST"])
def saved_view(request: HttpRequest, view_id: int) -> JsonResponse:
    """DELETE (or POST, for clients without it): remove one of the user's own views; 404 otherwise."""
    deleted, _ = SavedView.objects.filter(pk=view_id, user=request.user).delete()
    if not deleted:
        return JsonResponse({"error": "No such saved view."}, status=404)
    return JsonResponse({"deleted": view_id})
