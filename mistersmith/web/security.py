"""The console's answer to a locked-out login (django-axes calls it through AXES_LOCKOUT_CALLABLE),
and the WebSocket's origin check.

The lockout: a page in the admin's look rather than axes' bare text: it says why the form refused and
for how long, without saying whether the username exists. Status 429, so scripts see throttling as such.

The origin check (:class:`SiteOriginValidator`): a browser lets any page open a WebSocket to any
address with the user's cookies, so the socket must refuse pages of other origins itself. Channels'
``AllowedHostsOriginValidator`` compares host names only, which lets a page on another port or scheme
of the same host read a logged-in user's live data. Here the whole ``scheme://host:port`` of the
``Origin`` header must be the site's own origin (the request's ``Host``, with ``http`` for ``ws`` and
``https`` for ``wss`` or a request marked secure by ``SECURE_PROXY_SSL_HEADER``) or one of
``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` allows subdomains, as Django's CSRF check does).
The ``Host`` itself must pass ``ALLOWED_HOSTS`` (no DNS rebinding), and a socket without an
``Origin`` is refused.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.template.response import TemplateResponse

LOCKOUT_STATUS = 429


def lockout_response(request: HttpRequest, *_axes_arguments: Any) -> HttpResponse:
    """The lockout page. Axes passes (request, original_response, credentials), or (request,
    credentials) from its async path: neither is needed, so both shapes are accepted."""
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed logins",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cool_off_minutes": minutes,
    }
    response = TemplateResponse(request, "mistersmith/lockout.html", context, status=LOCKOUT_STATUS)
    return response.render()


DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host name (lower case, IPv6 without brackets), port


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as a comparable triple with the scheme's default port filled in;
    None for anything else (``null``, a path, another scheme, a bad port)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}


def _is_secure(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        return headers.get(header, "").split(",")[0].strip() == secure_value
    return False


def site_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin the socket was opened on, from its Host header; None when the host is not allowed."""
    headers = _headers(scope)
    host = headers.get("host", "")
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    scheme = "https" if _is_secure(scope, headers) else "http"
    return parse_origin(f"{scheme}://{host}")


def _trusted(origin: Origin, entry: str) -> bool:
    """One CSRF_TRUSTED_ORIGINS entry: exact, or ``scheme://*.domain[:port]`` for its subdomains."""
    wildcard = "://*." in entry
    trusted = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
    if trusted is None:
        return False
    scheme, host, port = trusted
    if (origin[0], origin[2]) != (scheme, port):
        return False
    return origin[1] == host or (wildcard and origin[1].endswith("." + host))  # as Django's CSRF check


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake comes from a page of the site itself or of a trusted origin."""
    origin = parse_origin(_headers(scope).get("origin", ""))
    if origin is None:
        return False
    own = site_origin(scope)
    if own is not None and origin == own:
        return True
    return any(_trusted(origin, entry) for entry in settings.CSRF_TRUSTED_ORIGINS)


class SiteOriginValidator:
    """ASGI middleware before the socket's consumer: a handshake from another origin is denied (the
    client sees the upgrade refused, HTTP 403) before the session is even read. The denial is plain
    ASGI on the event loop (a close before accept), not Channels' sync ``WebsocketDenier``, so a
    refused handshake never waits for the one thread that database calls share."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})
            return None
        return await self.application(scope, receive, send)
