"""What every live page shares on the server: its admin context, and the stream positions its
snapshot reflects (the page drops frames at or below them; see static/mistersmith/live.js)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Model
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

DEFAULT_CONSUMER_PREFIX = "mistersmith-console"


def bridge_consumer_prefix() -> str:
    """The durable-consumer prefix of this installation's bridge (``MISTERSMITH_BRIDGE_PREFIX``)."""
    return os.environ.get("MISTERSMITH_BRIDGE_PREFIX", DEFAULT_CONSUMER_PREFIX)


def stream_positions() -> dict[str, int]:
    """Per stream, the last sequence the projections reflect (committed with them, so a snapshot
    read in the same transaction is consistent with it)."""
    from agents.models import Discovery
    from mistersmith.models import BridgePosition

    prefix = bridge_consumer_prefix()
    positions = dict(BridgePosition.objects.filter(consumer__startswith=f"{prefix}-").values_list("stream", "sequence"))
    newest_discovery = Discovery.objects.aggregate(newest=Max("stream_sequence"))["newest"]
    if newest_discovery is not None:
        positions["DISCOVERIES"] = newest_discovery
    return positions


def live_page_context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    """The admin's context (sidebar, user links, theme) plus a title, for a page on live_base.html."""
    return {**admin.site.each_context(request), "title": title, **extra}


def admin_page(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A read-only admin page or snapshot: the admin's access rules (anonymous and non-staff go to
    the login page), then ``permission`` (403 without it); GET and HEAD only, never cached."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return admin.site.admin_view(require_safe(checked))

    return decorate


def may_view(request: HttpRequest, model: type[Model]) -> bool:
    """Whether the admin would show this user ``model``'s rows: its ModelAdmin's own
    ``has_view_permission`` (the view or the change permission). The live pages' JSON puts a
    model's rows in front of a user only when this is true, so it never shows what the admin hides;
    a model the admin does not register needs its view permission."""
    try:
        return admin.site.get_model_admin(model).has_view_permission(request)
    except NotRegistered:
        options = model._meta
        return request.user.has_perm(f"{options.app_label}.{get_permission_codename('view', options)}")


def hidden_parts(request: HttpRequest, part_models: dict[str, type[Model]]) -> dict[str, str]:
    """Of a page's parts (name -> the model whose rows it shows), those this user may not see, each
    with the sentence the page shows in its place; the JSON leaves them empty and names them."""
    return {
        part: f"Hidden: you may not view {model._meta.verbose_name_plural}."
        for part, model in part_models.items()
        if not may_view(request, model)
    }
