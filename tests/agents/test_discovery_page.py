"""The discoveries live page's views: login, permission, the filtered snapshot, bad filters."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from agents.discoveries import add_discoveries, parse_discovery
from tests.agents.test_discoveries import payload

pytestmark = pytest.mark.django_db


def test_anonymous_users_are_sent_to_the_login(client):
    for name in ("discovery_pages:page", "discovery_pages:snapshot"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_permission_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("plain", password="x-pass-123", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("discovery_pages:page")).status_code == 403
    assert client.get(reverse("discovery_pages:snapshot")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_discovery"))
    assert client.get(reverse("discovery_pages:snapshot")).status_code == 200


def test_the_snapshot_applies_the_filter_and_says_its_position(admin_client, django_assert_max_num_queries):
    add_discoveries(
        [parse_discovery(payload(1, kind="Pattern", confidence=0.9), sequence=10_001)]
        + [parse_discovery(payload(n, kind="Insight", confidence=0.2), sequence=10_001 + n) for n in range(2, 40)]
    )
    with django_assert_max_num_queries(12):
        answer = admin_client.get(reverse("discovery_pages:snapshot"), {"types": "pattern", "min_confidence": "0.5"})
    body = answer.json()
    assert [d["discovery_type"] for d in body["discoveries"]] == ["Pattern"] and body["matching"] == 1
    assert body["stats"]["total_discoveries"] == 39
    assert body["positions"]["DISCOVERIES"] == 10_040


def test_a_bad_filter_is_a_clear_400(admin_client):
    answer = admin_client.get(reverse("discovery_pages:snapshot"), {"min_confidence": "lots"})
    assert answer.status_code == 400 and "min_confidence" in answer.json()["error"]


def test_the_page_renders_the_form_with_the_query(admin_client):
    page = admin_client.get(reverse("discovery_pages:page"), {"keywords": "<b>cache</b>"})
    assert page.status_code == 200
    assert b'id="live-badge"' in page.content
    assert b"&lt;b&gt;cache&lt;/b&gt;" in page.content and b"<b>cache</b>" not in page.content
