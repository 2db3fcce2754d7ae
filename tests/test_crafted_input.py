"""Issue 12, item 12: crafted input gets a clear 400 or refusal, never a 500: keyset cursors of
another shape on the agents list (page and JSON), and names ending in a newline where a regex
validates them (``$`` matches before a trailing newline; validation uses fullmatch)."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from agents.selectors import decode_cursor, encode_cursor
from mistersmith.operations.snapshots.api import SnapshotError, resolve

pytestmark = pytest.mark.django_db

CRAFTED_POSITIONS = [["a", 123], ["a", None], ["a", {}], ["a", ["b"]], [1, "0" * 32], {"a": 1, "b": 2}, ["a"], "ab", 7]


def cursor_of(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.fixture
def viewer(django_user_model) -> Client:
    user = django_user_model.objects.create_user("cursor-viewer", password="viewer-pass-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename="view_agent"))
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("position", CRAFTED_POSITIONS, ids=json.dumps)
@pytest.mark.parametrize("direction", ["after", "before"])
def test_a_crafted_cursor_is_a_clear_error_not_a_500(viewer, position, direction):
    query = {direction: cursor_of(position)}
    snapshot = viewer.get(reverse("agent_pages:list_snapshot"), query)
    assert snapshot.status_code == 400
    assert snapshot.json()["error"] == "The page cursor is not valid; start again from the first page."
    page = viewer.get(reverse("agent_pages:list"), query)  # the page says so above an empty filter
    assert page.status_code == 200
    assert "The page cursor is not valid; start again from the first page." in page.content.decode()


def test_the_list_still_pages_with_its_own_cursors(viewer):
    cursor = encode_cursor("agent-1", "6f1c1b5e-0000-4000-8000-000000000001")
    assert decode_cursor(cursor) == ("agent-1", "6f1c1b5e-0000-4000-8000-000000000001")
    response = viewer.get(reverse("agent_pages:list_snapshot"), {"after": cursor})
    assert response.status_code == 200 and response.json()["agents"] == []


def test_a_snapshot_name_ending_in_a_newline_is_not_a_snapshot_name(tmp_path):
    (tmp_path / "good.tar\n").write_bytes(b"x")  # even when such a file exists
    with pytest.raises(SnapshotError, match="is not a snapshot file name"):
        resolve("good.tar\n", tmp_path)
