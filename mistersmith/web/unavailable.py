"""A clear 503 page, not a traceback, while PostgreSQL is away.

When the database is down, the psycopg pool gives up after its timeout and Django raises
``OperationalError`` (``InterfaceError`` for a connection that broke mid-request). Most of those
surface inside a view (the session and user are loaded lazily) and reach
:class:`DatabaseUnavailableMiddleware`; the rest (raised in another middleware) reach Django's
500 handler, :func:`server_error`. Both answer the same page with ``Retry-After``. The page is
rendered without a request context: the context processors would touch the database again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)
DATABASE_ERRORS = (OperationalError, InterfaceError)
# SQLSTATEs that mean "the server is not there": connection exceptions (class 08), shutting down
# or starting (57P01-57P03), too many connections. Other OperationalErrors (e.g. 54000, an index
# row too large) are errors of the request and stay 500s.
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def database_away(error: BaseException | None) -> bool:
    """Whether ``error`` says PostgreSQL cannot be reached (not that a statement failed)."""
    if not isinstance(error, DATABASE_ERRORS):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES)


RETRY_AFTER_SECONDS = 10


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """The 503 answer: HTML for a browser, JSON for an API or a fetch() of a live page."""
    if "application/json" in request.headers.get("Accept", "") or request.path.startswith("/api/"):
        response = HttpResponse(
            '{"error": "The database is not available; try again shortly."}',
            status=503,
            content_type="application/json",
        )
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if database_away(exception):
            logger.error("database unavailable: %s %s: %s", request.method, request.path, exception)
            return database_unavailable(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500: a database error raised outside a view still gets the 503 page."""
    if database_away(sys.exc_info()[1]):
        return database_unavailable(request)
    return HttpResponseServerError(render_to_string("500.html"))
