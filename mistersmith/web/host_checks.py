"""``manage.py check --deploy`` refuses ``ALLOWED_HOSTS = ["*"]`` in production.

A wildcard host lets any name reach the console, which turns the WebSocket's origin check
(:func:`mistersmith.web.security.origin_allowed`, the site's own origin taken from ``Host``) and the
links of password-reset mails into whatever the attacker's DNS name says. Development keeps its
defaults; production (``MISTERSMITH_ENV=production``) must list its host names.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

WILDCARD_HOSTS = "mistersmith.E012"


@register(Tags.security, deploy=True)
def wildcard_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An error (not a warning) so that a deploy pipeline running ``check --deploy`` stops."""
    if not getattr(settings, "PRODUCTION", False) or "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        Error(
            'ALLOWED_HOSTS contains "*" in production.',
            hint="List the console's host names in ALLOWED_HOSTS (comma separated), e.g. console.example.com.",
            id=WILDCARD_HOSTS,
        )
    ]
