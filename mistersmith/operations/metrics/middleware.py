"""django-prometheus' request metrics with every label bounded.

Its middleware labels series with the request's method, and one of them (the latency histogram)
takes ``request.method`` as sent: a client sending made-up methods (``ZZQX``...) to ``/healthz``
added a series per method, forever, to every scrape. Here a method outside HTTP's known set is
counted as ``other``. The other labels are bounded already: the view is a URL pattern's name (or
``<unnamed view>``), the status a response the console made, the transport http or https.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django_prometheus.middleware import PrometheusAfterMiddleware

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"})
OTHER_METHOD = "other"


def bounded_method(method: str | None) -> str:
    """The method as a label value: itself when HTTP defines it, else ``other``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


class BoundedPrometheusAfterMiddleware(PrometheusAfterMiddleware):
    """PrometheusAfterMiddleware whose ``method`` label never holds a client's made-up method.

    Synchronous only, as the innermost middleware: Django then runs the middleware inside it
    (sessions, CSRF, auth, messages, axes) in one worker thread, instead of each of them, in async
    mode, hopping to that thread and back for its request and again for its response (about a
    dozen hops per request, CPU the load test paid on every page: docs/deploy.md, "Pages under load").
    """

    async_capable = False
    sync_capable = True

    def _method(self, request: HttpRequest) -> str:
        return bounded_method(request.method)

    def label_metric(self, metric: Any, request: HttpRequest, response: Any = None, **labels: str) -> Any:
        if "method" in labels:
            labels["method"] = bounded_method(labels["method"])
        return super().label_metric(metric, request, response, **labels)
