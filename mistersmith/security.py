"""The console's answer to a locked-out login (django-axes calls it through AXES_LOCKOUT_CALLABLE).

A page in the admin's look rather than axes' bare text: it says why the form refused and for how
long, without saying whether the username exists. Status 429, so scripts see throttling as such.
"""

from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
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
