"""reverse_with_id (mistersmith/web/links.py): the same URL as reverse(), reversed once per name."""

import uuid

from django.urls import reverse, set_script_prefix

from mistersmith.web.links import reverse_with_id


def test_it_writes_what_reverse_writes():
    for _ in range(3):
        key = uuid.uuid4()
        assert reverse_with_id("incidents:page", key) == reverse("incidents:page", args=[key])
        assert reverse_with_id("agent_pages:detail", str(key)) == reverse("agent_pages:detail", args=[key])


def test_a_script_prefix_is_kept_per_prefix():
    key = uuid.uuid4()
    try:
        set_script_prefix("/console/")
        assert reverse_with_id("incidents:page", key) == f"/console/admin/incidents/{key}/"
        assert reverse_with_id("incidents:page", key) == reverse("incidents:page", args=[key])
    finally:
        set_script_prefix("/")
    assert reverse_with_id("incidents:page", key) == f"/admin/incidents/{key}/"
