"""mistersmith.web.access: the one access rule. The primitive's order of checks, the wrappers'
status codes and the one wording of a JSON refusal, for each kind of user; the permission matrix
(test_permission_matrix.py) checks every URL through them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from mistersmith.web import access

PERMISSION = "agents.view_agent"


def make_user(*, staff: bool = False, perm: bool = False, superuser: bool = False, active: bool = True) -> Any:
    tag = uuid.uuid4().hex[:8]
    user = get_user_model().objects.create_user(
        f"access-{tag}", is_staff=staff or superuser, is_superuser=superuser, is_active=active
    )
    if perm:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="agents", codename="view_agent"))
    return get_user_model().objects.get(pk=user.pk)  # a fresh user: no stale permission cache


def request_of(user: Any, method: str = "GET") -> HttpRequest:
    request = RequestFactory().generic(method, "/somewhere/?x=1")
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    request.user = user
    request._dont_enforce_csrf_checks = True  # as the test client does; CSRF has tests of its own
    return request


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the view ran")


USERS = {
    "anonymous": lambda: AnonymousUser(),
    "member": lambda: make_user(perm=True),
    "inactive_staff": lambda: make_user(staff=True, perm=True, active=False),
    "bare_staff": lambda: make_user(staff=True),
    "viewer": lambda: make_user(staff=True, perm=True),
    "superuser": lambda: make_user(superuser=True),
}


@pytest.mark.django_db
def test_the_primitive_says_why_in_the_order_the_checks_run():
    rule = access.Rule(permissions=(PERMISSION,))
    got = {name: access.refusal(build(), rule) for name, build in USERS.items()}
    assert got == {
        "anonymous": access.Refusal.ANONYMOUS,
        "member": access.Refusal.NOT_STAFF,
        "inactive_staff": access.Refusal.NOT_STAFF,
        "bare_staff": access.Refusal.NOT_PERMITTED,
        "viewer": None,
        "superuser": None,
    }
    api = access.Rule(permissions=(PERMISSION,), staff=False)
    assert access.refusal(make_user(perm=True), api) is None  # API clients need not be staff
    only_superusers = access.Rule(superuser=True)
    assert access.refusal(make_user(staff=True, perm=True), only_superusers) is access.Refusal.NOT_PERMITTED
    assert access.refusal(make_user(superuser=True), only_superusers) is None


def outcome(view, user: Any, method: str = "GET") -> tuple[int, str]:
    try:
        response = view(request_of(user, method))
    except PermissionDenied:
        return 403, ""
    if response.status_code == 302:
        return 302, response["Location"]
    return response.status_code, response.content.decode()


@pytest.mark.django_db
def test_json_endpoint_answers_with_one_wording_and_never_redirects():
    view = access.json_endpoint(PERMISSION)(ok)
    got = {name: outcome(view, build()) for name, build in USERS.items()}
    needs = '{"error": "You may not do this: it needs the permission agents.view_agent."}'
    assert got == {
        "anonymous": (401, '{"error": "Log in first."}'),
        "member": (403, '{"error": "Log in as staff first."}'),
        "inactive_staff": (403, '{"error": "Log in as staff first."}'),
        "bare_staff": (403, needs),
        "viewer": (200, "the view ran"),
        "superuser": (200, "the view ran"),
    }
    assert "no-cache" in view(request_of(make_user(staff=True, perm=True)))["Cache-Control"]


@pytest.mark.django_db
def test_json_endpoint_options_non_staff_status_api_and_methods_first():
    assert outcome(access.json_endpoint(PERMISSION, non_staff_status=401)(ok), make_user(perm=True))[0] == 401
    api = access.json_endpoint(PERMISSION, staff=False)(ok)
    assert outcome(api, make_user(perm=True)) == (200, "the view ran")
    assert outcome(api, make_user())[0] == 403
    safe = access.json_endpoint(PERMISSION, methods=access.SAFE_METHODS)(ok)
    assert outcome(safe, AnonymousUser(), "POST")[0] == 405  # the method is checked before access
    assert outcome(safe, make_user(staff=True, perm=True), "HEAD")[0] == 200


# The status each kind of user gets, in USERS' order: anonymous, member, inactive_staff,
# bare_staff, viewer, superuser.
PAGE_STATUSES = {
    "admin_page": (access.admin_page(PERMISSION)(ok), (302, 302, 302, 403, 200, 200)),
    "admin_page_forbid_non_staff": (
        access.admin_page(PERMISSION, forbid_non_staff=True)(ok),
        (302, 403, 403, 403, 200, 200),  # a logged-in member is told no, not sent to log in again
    ),
    "superuser_page": (access.superuser_page(ok), (302, 302, 302, 403, 403, 200)),
}


@pytest.mark.django_db
@pytest.mark.parametrize("wrapper", PAGE_STATUSES)
def test_page_wrappers_send_anonymous_users_to_the_login_form_and_refuse_the_others(wrapper):
    view, statuses = PAGE_STATUSES[wrapper]
    assert {name: outcome(view, build())[0] for name, build in USERS.items()} == dict(zip(USERS, statuses, strict=True))
    assert outcome(view, AnonymousUser())[1].startswith("/admin/login/?next=")


@pytest.mark.django_db
def test_admin_page_takes_get_and_head_unless_said():
    view = access.admin_page(PERMISSION)(ok)
    assert outcome(view, make_user(staff=True, perm=True), "POST")[0] == 405
    posted = access.admin_page(PERMISSION, methods=("GET", "POST"))(ok)
    assert outcome(posted, make_user(staff=True, perm=True), "POST") == (200, "the view ran")
