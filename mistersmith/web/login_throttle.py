"""Login throttling's two guards beyond django-axes' own settings (docs/security.md).

Who the client is: axes keys its counts on the address :func:`client_address` returns. That is
the socket peer (``REMOTE_ADDR``) unless the peer is one of the proxies listed in
``TRUSTED_PROXIES`` (addresses or networks, none by default); only then is ``X-Forwarded-For``
read, from the right, skipping the trusted proxies. Anyone else's header is ignored, so a client
cannot pick a fresh address per attempt by writing one into the header.

``manage.py check --deploy`` warns when throttling is off (``LOGIN_THROTTLING=0``) in
production: without it the login form takes unlimited password guesses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.http import HttpRequest

THROTTLING_OFF = "mistersmith.W013"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """``TRUSTED_PROXIES`` entries as networks (a bare address is a /32 or /128); a typo is an
    error at start-up rather than a proxy silently not trusted."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def _parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(request: HttpRequest) -> str | None:
    """The address login failures are counted against (``AXES_CLIENT_IP_CALLABLE``)."""
    peer_text = request.META.get("REMOTE_ADDR")
    peer = _parse_address(peer_text)
    networks = parse_networks(getattr(settings, "TRUSTED_PROXIES", []))
    if peer is None or not _trusted(peer, networks):
        return peer_text
    client = peer
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):  # the nearest proxy appended last
        address = _parse_address(hop)
        if address is None:
            break  # garbage before a trusted hop: keep the last address a trusted proxy vouched for
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


@register(Tags.security, deploy=True)
def throttling_off_in_production(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A warning: turning throttling off may be deliberate (another layer limits logins)."""
    if not getattr(settings, "PRODUCTION", False) or getattr(settings, "AXES_ENABLED", True):
        return []
    return [
        Warning(
            "Login throttling is off in production (LOGIN_THROTTLING=0): the login form accepts unlimited guesses.",
            hint="Unset LOGIN_THROTTLING (or set it to 1) unless something in front of the console limits logins.",
            id=THROTTLING_OFF,
        )
    ]
