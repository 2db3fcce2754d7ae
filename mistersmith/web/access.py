"""One access rule for every page and JSON endpoint the console serves, like
``django.contrib.auth.decorators``: one primitive (:func:`refusal`: why this user may not, or
None) and the wrappers views put on top of it, so the checks, status codes and texts are written
once instead of by hand in each view.

- :func:`admin_page`: an admin page (HTML). Anonymous and non-staff users go to the admin's login
  form (the admin's own rule, ``admin.site.admin_view``), staff without the permission get 403.
- :func:`superuser_page`: the same for pages only superusers may use (snapshots).
- :func:`json_endpoint`: a JSON endpoint. It never redirects: 401 for anonymous callers, 403
  (or 401, where the endpoint says so) for non-staff ones, 403 without the permission, each with
  the one wording of :data:`TEXTS`, and never cached.

And what the live pages need to show only what the admin shows: :func:`live_page_context`,
:func:`may_view`, :func:`hidden_parts`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

View = Callable[..., HttpResponse]
SAFE_METHODS = ("GET", "HEAD")


class Refusal(enum.Enum):
    """Why a request is refused, in the order the checks run."""

    ANONYMOUS = "anonymous"
    NOT_STAFF = "not_staff"
    NOT_PERMITTED = "not_permitted"


@dataclass(frozen=True)
class Rule:
    """Who may: logged in, and (``staff``) active staff, and (``superuser``) a superuser, holding
    every one of ``permissions``."""

    permissions: tuple[str, ...] = ()
    staff: bool = True
    superuser: bool = False


def refusal(user: AbstractBaseUser | AnonymousUser, rule: Rule) -> Refusal | None:
    """The one primitive: why ``user`` may not pass ``rule``, or None when they may."""
    if not user.is_authenticated:
        return Refusal.ANONYMOUS
    if rule.staff and not (user.is_active and user.is_staff):
        return Refusal.NOT_STAFF
    if rule.superuser and not user.is_superuser:
        return Refusal.NOT_PERMITTED
    if not all(user.has_perm(permission) for permission in rule.permissions):
        return Refusal.NOT_PERMITTED
    return None


# The one wording of a JSON refusal (the page shows it as the reason it has no data).
TEXTS = {
    Refusal.ANONYMOUS: "Log in first.",
    Refusal.NOT_STAFF: "Log in as staff first.",
    Refusal.NOT_PERMITTED: "You may not do this: it needs the permission {permission}.",
}


def refusal_text(refused: Refusal, rule: Rule) -> str:
    """The sentence a JSON refusal carries; a missing permission is named (staff know the admin's names)."""
    needed = ", ".join(rule.permissions) if rule.permissions else "of a superuser"
    return TEXTS[refused].format(permission=needed)


def _permissions(permission: str | None) -> tuple[str, ...]:
    return (permission,) if permission else ()


def _page(rule: Rule, methods: Sequence[str] | None, forbid_non_staff: bool) -> Callable[[View], View]:
    """An HTML page under ``rule``: anonymous users (and, unless ``forbid_non_staff``, non-staff
    ones) to the admin's login form, every other refusal 403; ``methods`` (None: the view's own)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = refusal(request.user, rule)
            if refused is Refusal.ANONYMOUS:
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if refused is not None:
                raise PermissionDenied
            return view(request, *args, **kwargs)

        inner = require_http_methods(list(methods))(checked) if methods is not None else checked
        if forbid_non_staff:
            return never_cache(csrf_protect(inner))  # what admin_view adds, without its redirect
        return admin.site.admin_view(inner)

    return decorate


def admin_page(
    permission: str | None = None, *, methods: Sequence[str] = SAFE_METHODS, forbid_non_staff: bool = False
) -> Callable[[View], View]:
    """An admin page: the admin's access rules (anonymous and non-staff users go to the login
    form), then ``permission`` (403 without it); ``methods`` only (GET and HEAD unless said), never
    cached, CSRF-checked. ``forbid_non_staff``: a logged-in non-staff user gets 403 instead of the
    login form (the event log, whose right is its own apart from the admin's)."""
    return _page(Rule(permissions=_permissions(permission)), methods, forbid_non_staff)


def superuser_page(view: View) -> View:
    """The admin's login rules, then superusers only (403 for other staff); the view picks its methods."""
    return _page(Rule(superuser=True), None, False)(view)


def json_endpoint(
    *permissions: str, staff: bool = True, non_staff_status: int = 403, methods: Sequence[str] | None = None
) -> Callable[[View], View]:
    """A JSON endpoint under one rule: 401 anonymous, ``non_staff_status`` for a logged-in user who
    is not active staff (when ``staff``: API clients of the runtime's contract need not be), 403
    without every one of ``permissions``; the texts of :data:`TEXTS`. Never cached: an answer is
    one user's at one moment. ``methods``: checked first (405 before any access check); None: the
    view checks its own after access (require_safe/require_POST stacked under this)."""
    rule = Rule(permissions=permissions, staff=staff)
    status = {Refusal.ANONYMOUS: 401, Refusal.NOT_STAFF: non_staff_status, Refusal.NOT_PERMITTED: 403}

    def decorate(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = refusal(request.user, rule)
            if refused is not None:
                return JsonResponse({"error": refusal_text(refused, rule)}, status=status[refused])
            return view(request, *args, **kwargs)

        return never_cache(require_http_methods(list(methods))(checked) if methods is not None else checked)

    return decorate


def live_page_context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    """The admin's context (sidebar, user links, theme) plus a title, for a page on live_base.html."""
    return {**admin.site.each_context(request), "title": title, **extra}


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
