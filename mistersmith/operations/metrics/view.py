"""``/metrics``: the Prometheus exposition, for the scraper only.

Not behind the admin login (a scraper has no session): access is by network or by token.

- ``METRICS_ALLOWED_NETWORKS``: CIDR list whose addresses may scrape (default loopback only;
  empty: none). A request that came through a proxy (``Forwarded``, ``X-Forwarded-For`` or
  ``X-Real-IP`` present) is never let in by address: behind a proxy on the same host every
  visitor would otherwise look like loopback.
- ``METRICS_TOKEN``: when set, ``Authorization: Bearer <token>`` lets a scraper in from anywhere.

Anything else gets 404 (the endpoint is not advertised); a wrong token gets 403.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from mistersmith.operations.metrics import figures as metrics

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

metrics.register()


@functools.cache
def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The CIDR list of METRICS_ALLOWED_NETWORKS; a bad entry is a configuration error, said at once."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {value!r} is not a network ({error}).") from error
    return tuple(networks)


def address_allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether ``address`` lies in one of ``networks`` (an IPv4-mapped IPv6 address counts as IPv4)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def access(request: HttpRequest) -> str:
    """ "token" or "network" when the request may scrape; "bad-token" or "refused" when not."""
    token, configured = bearer_token(request), settings.METRICS_TOKEN
    if token is not None:
        if configured and hmac.compare_digest(token.encode(), configured.encode()):
            return "token"
        return "bad-token"
    if any(header in request.headers for header in PROXY_HEADERS):
        return "refused"
    networks = parse_networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    return "network" if address_allowed(request.META.get("REMOTE_ADDR"), networks) else "refused"


def registry() -> CollectorRegistry:
    """The process's registry; with prometheus_client's multiprocess mode, the merged files of
    every worker plus the console's collector (read once, whichever worker answers)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    from prometheus_client import multiprocess

    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    merged.register(metrics.COLLECTOR)
    return merged


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    verdict = access(request)
    if verdict == "bad-token":
        return HttpResponseForbidden("Wrong metrics token.", content_type="text/plain")
    if verdict == "refused":
        raise Http404
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
