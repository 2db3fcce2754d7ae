"""Where the console's NATS is: NATS_URL, or the embedded server started on first use."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from mistersmith import embedded


@cache
def nats_url() -> str:
    return settings.NATS_URL or embedded.nats_url(settings.VAR_DIR)
