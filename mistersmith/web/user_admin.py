"""The admin of accounts and groups: only superusers hand out power.

Django's stock ``UserAdmin`` lets anyone with ``auth.change_user`` tick ``is_superuser`` on any
account, their own included, so ``change_user`` was as good as being a superuser. Here a user who
is not a superuser sees ``is_superuser``, ``is_staff``, ``groups`` and ``user_permissions`` read-only
(a group's ``permissions`` too), may not change, delete or set the password of an account that
holds more than they do (every superuser among them), and the saves refuse such changes even when
the form is bypassed: a new account made by them is never staff or superuser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import AbstractUser, Group, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

# What only a superuser may set on an account (flags) or grant (relations).
POWER_FLAGS = ("is_superuser", "is_staff")
POWER_RELATIONS = ("groups", "user_permissions")


def may_manage(actor: AbstractUser, account: AbstractUser | None) -> bool:
    """Whether ``actor`` may change or delete ``account``: superusers may manage anyone; others only
    accounts that are not superusers and hold no permission the actor lacks (else setting such an
    account's password would hand the actor its extra power)."""
    if actor.is_superuser or account is None:
        return True
    if account.is_superuser:
        return False
    return account.get_all_permissions() <= actor.get_all_permissions()


class ConsoleUserAdmin(UserAdmin):
    """``UserAdmin`` where superuser, staff, groups and permissions are for superusers to grant."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += [name for name in (*POWER_FLAGS, *POWER_RELATIONS) if name not in readonly]
        return readonly

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and may_manage(request.user, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and may_manage(request.user, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """The bulk delete action checks the model permission only: an account the user may not
        manage is a missing permission, so the confirmation page says so and the POST is a 403."""
        deletable, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        if any(not may_manage(request.user, account) for account in objs):
            perms_needed = {*perms_needed, "superuser (an account that holds more than you)"}
        return deletable, model_count, perms_needed, protected

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Refuse, whatever was posted, a non-superuser's save that sets a flag or touches an
        account they may not manage (the read-only fields already keep the form from it)."""
        if not request.user.is_superuser:
            before = type(obj).objects.filter(pk=obj.pk).first() if change else None
            if before is not None and not may_manage(request.user, before):
                raise PermissionDenied
            for flag in POWER_FLAGS:
                if getattr(obj, flag) != (getattr(before, flag) if before is not None else False):
                    raise PermissionDenied
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if not request.user.is_superuser and any(name in form.cleaned_data for name in POWER_RELATIONS):
            raise PermissionDenied
        super().save_related(request, form, formsets, change)


class ConsoleGroupAdmin(GroupAdmin):
    """A group's permissions are granted by superusers only (a member could grant them to itself)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser and "permissions" not in readonly:
            readonly.append("permissions")
        return readonly

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if not request.user.is_superuser and "permissions" in form.cleaned_data:
            raise PermissionDenied
        super().save_related(request, form, formsets, change)


def register(site: admin.AdminSite = admin.site) -> None:
    """Put the console's account admins in place of Django's (``django.contrib.auth`` registered first)."""
    for model, model_admin in ((User, ConsoleUserAdmin), (Group, ConsoleGroupAdmin)):
        if site.is_registered(model):
            site.unregister(model)
        site.register(model, model_admin)
