"""Query parameters PostgreSQL cannot take are refused before any view runs.

PostgreSQL refuses a NUL character in text, even in a comparison: a query parameter holding one
(``?q=%00``) reaches a filter (the admin's own list filters, the tree's search, the agents list)
and the query fails with a server error. Checking every query string here, once, covers each
page and API, Django's own admin included, instead of each view. A 400 says what is wrong, as
JSON for API clients and as a short page for browsers.

Form posts are left to their forms: Django's text fields refuse NUL with a message on the field
(``ProhibitNullCharactersValidator``), and the JSON fields with :class:`mistersmith.web.forms.StorableJSONField`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.html import escape

MESSAGE = "The address holds a NUL character (%00), which cannot be searched or stored. Remove it and try again."


def has_nul(request: HttpRequest) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())


class RefuseNulQueryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if has_nul(request):
            if "text/html" in request.headers.get("Accept", ""):
                page = f"<!DOCTYPE html><title>Bad request</title><h1>Bad request</h1><p>{escape(MESSAGE)}</p>"
                return HttpResponseBadRequest(page)
            return JsonResponse({"error": MESSAGE}, status=400)
        return self.get_response(request)
