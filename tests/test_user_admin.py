"""Only superusers grant superuser, staff, groups or permissions (issue 12 item 8).

Through Django's test client and the real admin on PostgreSQL: a staff user holding ``auth``'s
add/change/delete permissions posts the forms as a browser would (the power fields included, as an
attacker would add them) and the database is left as it was; a superuser's same POST takes effect.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

pytestmark = pytest.mark.django_db

USER_ADMIN_PERMISSIONS = ("view_user", "add_user", "change_user", "delete_user", "view_group", "change_group")


def make_user(*, staff: bool = False, superuser: bool = False, codenames: tuple[str, ...] = ()) -> User:
    name = f"u-{uuid.uuid4().hex[:8]}"
    if superuser:
        user = User.objects.create_superuser(name, f"{name}@example.com", "old-Password-1")
    else:
        user = User.objects.create_user(name, f"{name}@example.com", "old-Password-1", is_staff=staff)
    if codenames:
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth", codename__in=codenames))
    return user


@pytest.fixture
def manager() -> User:
    """Staff, not superuser, with every permission on accounts and groups."""
    return make_user(staff=True, codenames=USER_ADMIN_PERMISSIONS)


def change_form(user: User, **power: Any) -> dict[str, Any]:
    """The user change form as the admin posts it, with ``power`` fields added on top."""
    data = {
        "username": user.username,
        "first_name": "First",
        "last_name": "Last",
        "email": user.email,
        "is_active": "on",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
    }
    data.update(power)
    return data


def power_fields() -> dict[str, Any]:
    group = Group.objects.create(name=f"g-{uuid.uuid4().hex[:8]}")
    permission = Permission.objects.get(content_type__app_label="auth", codename="delete_group")
    return {"is_superuser": "on", "is_staff": "on", "groups": [group.pk], "user_permissions": [permission.pk]}


def assert_powerless_as_before(user: User, *, staff: bool, codenames: set[str]) -> None:
    user.refresh_from_db()
    assert not user.is_superuser
    assert user.is_staff is staff
    assert not user.groups.exists()
    assert set(user.user_permissions.values_list("codename", flat=True)) == codenames


def test_a_staff_user_cannot_make_itself_superuser_staff_or_grant_itself_permissions(client, manager):
    client.force_login(manager)
    url = reverse("admin:auth_user_change", args=[manager.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="is_superuser"' not in page.content
    assert b'name="user_permissions"' not in page.content
    response = client.post(url, change_form(manager, **power_fields()))
    assert response.status_code == 302  # the harmless fields are saved, the others ignored
    assert_powerless_as_before(manager, staff=True, codenames=set(USER_ADMIN_PERMISSIONS))
    manager.refresh_from_db()
    assert manager.first_name == "First"


def test_a_staff_user_cannot_make_another_user_staff_superuser_or_grant_it_anything(client, manager):
    other = make_user()
    client.force_login(manager)
    response = client.post(reverse("admin:auth_user_change", args=[other.pk]), change_form(other, **power_fields()))
    assert response.status_code == 302
    assert_powerless_as_before(other, staff=False, codenames=set())


def test_a_superuser_can_grant_superuser_staff_groups_and_permissions(client):
    boss, other = make_user(superuser=True), make_user()
    client.force_login(boss)
    response = client.post(reverse("admin:auth_user_change", args=[other.pk]), change_form(other, **power_fields()))
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.is_superuser and other.is_staff
    assert other.groups.count() == 1
    assert list(other.user_permissions.values_list("codename", flat=True)) == ["delete_group"]


def test_a_staff_user_cannot_add_a_staff_or_superuser_account(client, manager):
    client.force_login(manager)
    name = f"new-{uuid.uuid4().hex[:8]}"
    data = {"username": name, "password1": "Secret-Pass-42x", "password2": "Secret-Pass-42x", **power_fields()}
    data["usable_password"] = "true"
    response = client.post(reverse("admin:auth_user_add"), data)
    assert response.status_code == 302
    assert_powerless_as_before(User.objects.get(username=name), staff=False, codenames=set())


def test_a_staff_user_cannot_change_a_superusers_account_nor_its_password_nor_delete_it(client, manager):
    boss = make_user(superuser=True)
    client.force_login(manager)
    change = reverse("admin:auth_user_change", args=[boss.pk])
    assert client.post(change, change_form(boss, is_superuser="", is_staff="")).status_code == 403
    password = reverse("admin:auth_user_password_change", args=[boss.pk])
    assert client.get(password).status_code == 403
    new = {"password1": "Taken-Over-99z", "password2": "Taken-Over-99z", "usable_password": "true"}
    assert client.post(password, new).status_code == 403
    assert client.post(reverse("admin:auth_user_delete", args=[boss.pk]), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [boss.pk], "post": "yes"}
    assert client.post(reverse("admin:auth_user_changelist"), bulk).status_code == 403
    boss.refresh_from_db()
    assert boss.is_superuser and boss.is_staff and boss.first_name == ""
    assert boss.check_password("old-Password-1")


def test_a_staff_user_cannot_take_over_an_account_holding_more_permissions(client, manager):
    stronger = make_user(staff=True, codenames=USER_ADMIN_PERMISSIONS)
    stronger.user_permissions.add(Permission.objects.get(content_type__app_label="auth", codename="delete_group"))
    client.force_login(manager)
    new = {"password1": "Taken-Over-99z", "password2": "Taken-Over-99z", "usable_password": "true"}
    response = client.post(reverse("admin:auth_user_password_change", args=[stronger.pk]), new)
    assert response.status_code == 403
    stronger.refresh_from_db()
    assert stronger.check_password("old-Password-1")


def test_a_staff_user_cannot_grant_permissions_to_a_group(client, manager):
    group = Group.objects.create(name=f"g-{uuid.uuid4().hex[:8]}")
    manager.groups.add(group)
    permission = Permission.objects.get(content_type__app_label="auth", codename="delete_group")
    client.force_login(manager)
    url = reverse("admin:auth_group_change", args=[group.pk])
    response = client.post(url, {"name": group.name, "permissions": [permission.pk]})
    assert response.status_code == 302
    assert not group.permissions.exists()
    assert not User.objects.get(pk=manager.pk).has_perm("auth.delete_group")


def test_a_superuser_can_grant_permissions_to_a_group(client):
    group = Group.objects.create(name=f"g-{uuid.uuid4().hex[:8]}")
    permission = Permission.objects.get(content_type__app_label="auth", codename="delete_group")
    client.force_login(make_user(superuser=True))
    response = client.post(
        reverse("admin:auth_group_change", args=[group.pk]), {"name": group.name, "permissions": [permission.pk]}
    )
    assert response.status_code == 302
    assert list(group.permissions.all()) == [permission]


def test_the_save_refuses_a_non_superusers_power_change_that_bypassed_the_form(rf, manager):
    """Read-only fields keep the form from it; the save refuses it as well (a changelist action or a
    custom form would reach ``save_model`` without that protection)."""
    from django.contrib import admin
    from django.core.exceptions import PermissionDenied

    from mistersmith.web.user_admin import ConsoleUserAdmin

    model_admin = admin.site._registry[User]
    assert isinstance(model_admin, ConsoleUserAdmin)
    request = rf.post("/")
    request.user = manager
    forged = User.objects.get(pk=manager.pk)
    forged.is_superuser = True
    with pytest.raises(PermissionDenied):
        model_admin.save_model(request, forged, form=None, change=True)
    new = User(username=f"new-{uuid.uuid4().hex[:8]}", is_staff=True)
    with pytest.raises(PermissionDenied):
        model_admin.save_model(request, new, form=None, change=False)
    assert not User.objects.filter(username=new.username).exists()
    assert not User.objects.get(pk=manager.pk).is_superuser
