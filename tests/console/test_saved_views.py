"""Issue 14, item 4: saved views, a person's named states of the live pages (saved_views:list and
saved_views:detail). Each user reaches only their own; bad input is a 400 that says what is wrong."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from mistersmith.live.models import SavedView

pytestmark = pytest.mark.django_db

EVENTS = "/admin/events/"


def staff_client(django_user_model, username: str) -> tuple[Client, object]:
    user = django_user_model.objects.create_user(username, password="pw-12345678", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(reverse("admin:index"))  # a page sets the CSRF cookie, as a browser gets it
    return client, user


def csrf(client: Client) -> dict[str, str]:
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def save(client: Client, **fields: str):
    return client.post(reverse("saved_views:list"), {"page": EVENTS, **fields}, **csrf(client))


def listed(client: Client, page: str = EVENTS) -> list[dict]:
    response = client.get(reverse("saved_views:list"), {"page": page})
    assert response.status_code == 200, response.content
    return response.json()["views"]


@pytest.fixture
def alice(django_user_model):
    return staff_client(django_user_model, "alice")


@pytest.fixture
def bob(django_user_model):
    return staff_client(django_user_model, "bob")


def test_save_list_replace_and_delete_own_views(alice):
    client, user = alice
    created = save(client, name="Agent errors", query="?stream=AGENT_EVENTS&text=error")
    assert created.status_code == 201, created.content
    view = created.json()["view"]
    assert view["query"] == "stream=AGENT_EVENTS&text=error"  # the leading "?" is dropped
    assert view["url"] == f"{EVENTS}?stream=AGENT_EVENTS&text=error"
    assert [v["name"] for v in listed(client)] == ["Agent errors"]
    assert listed(client, "/admin/live/") == []  # views belong to their page

    replaced = save(client, name="  Agent   errors ", query="stream=SYSTEM_EVENTS")
    assert replaced.status_code == 200  # the same name (spaces folded) replaces the query
    assert SavedView.objects.filter(user=user).count() == 1
    assert listed(client)[0]["query"] == "stream=SYSTEM_EVENTS"

    deleted = client.delete(reverse("saved_views:detail", args=[view["id"]]), **csrf(client))
    assert deleted.status_code == 200
    assert listed(client) == []


def test_a_user_never_sees_or_deletes_another_users_views(alice, bob):
    alice_client, _ = alice
    bob_client, _ = bob
    view = save(alice_client, name="Mine", query="text=secret").json()["view"]
    save(bob_client, name="Mine", query="text=other")  # the same name is free for another user

    assert [v["query"] for v in listed(bob_client)] == ["text=other"]
    gone = bob_client.delete(reverse("saved_views:detail", args=[view["id"]]), **csrf(bob_client))
    assert gone.status_code == 404
    assert SavedView.objects.filter(pk=view["id"]).exists()
    assert [v["query"] for v in listed(alice_client)] == ["text=secret"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": ""}, "name is required."),
        ({"name": "x" * 81}, "name is longer than 80 characters."),
        ({"name": "a", "page": "//evil.example/"}, "page must be a path of this console"),
        ({"name": "a", "page": "https://evil.example/admin/"}, "page must be a path of this console"),
        ({"name": "a", "page": "/no/such/page/"}, "page is not a page of this console."),
        ({"name": "a", "query": "a=1#frag"}, "query must be a query string"),
        ({"name": "a", "query": "x" * 2001}, "query is longer than 2000 characters."),
    ],
)
def test_bad_input_is_a_clear_400(alice, fields, error):
    client, user = alice
    response = client.post(reverse("saved_views:list"), {"page": EVENTS, **fields}, **csrf(client))
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert not SavedView.objects.filter(user=user).exists()


def test_listing_needs_a_page(alice):
    client, _ = alice
    response = client.get(reverse("saved_views:list"))
    assert response.status_code == 400
    assert "page must be a path" in response.json()["error"]


def test_names_come_back_as_data(alice):
    client, _ = alice
    save(client, name="<script>alert(1)</script>", query="")
    assert listed(client)[0]["name"] == "<script>alert(1)</script>"  # the menu writes it with textContent


def test_login_staff_and_csrf_are_required(client, django_user_model, alice):
    url = reverse("saved_views:list")
    assert client.get(url, {"page": EVENTS}).status_code == 401
    outsider = django_user_model.objects.create_user("outsider", password="pw-12345678")
    client.force_login(outsider)
    assert client.get(url, {"page": EVENTS}).status_code == 403

    staff, user = alice
    no_token = staff.post(url, {"page": EVENTS, "name": "a"})
    assert no_token.status_code == 403
    assert not SavedView.objects.filter(user=user).exists()


def test_a_page_holds_at_most_fifty_views(alice):
    client, user = alice
    SavedView.objects.bulk_create(SavedView(user=user, page=EVENTS, name=f"v{i}") for i in range(50))
    response = save(client, name="one more")
    assert response.status_code == 400
    assert "at most 50" in response.json()["error"]
    assert save(client, name="v7", query="text=x").status_code == 200  # replacing one is still fine


def test_saved_views_are_not_part_of_state_snapshots():
    """A person's settings point at this installation's users: a snapshot restored elsewhere must
    not carry them (operations/snapshots/tables.py skips models with ``in_snapshots = False``)."""
    from mistersmith.operations.snapshots.tables import state_tables

    tables = {spec.table for spec in state_tables()}
    assert SavedView._meta.db_table not in tables
    assert "mistersmith_deadletter" in tables  # the live app's state is still there
