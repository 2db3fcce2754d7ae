"""Issue 12, item 13: the verification and snapshot pages keep to the CSP (no inline style: their
styles are static files that are served), /favicon.ico is an icon rather than a 404 on every page,
and a 403 logs one line instead of a traceback."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from mistersmith.operations.snapshots.api import list_snapshots

pytestmark = pytest.mark.django_db

INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)


def assert_no_inline_style_and_served_sheets(client: Client, html: str, *sheets: str) -> None:
    assert INLINE_STYLE.findall(html) == []
    for sheet in sheets:
        [href] = re.findall(rf'href="([^"]*/mistersmith/{re.escape(sheet)})"', html)
        served = client.get(href)
        assert served.status_code == 200, href
        assert served["Content-Type"].startswith("text/css")


def test_the_verification_page_has_no_inline_style(admin_client):
    response = admin_client.get(reverse("verify_state:page"))
    assert response.status_code == 200
    html = response.content.decode()
    assert_no_inline_style_and_served_sheets(admin_client, html, "verify_state.css")
    assert ".verify-refresh-error" in Path(finders.find("mistersmith/verify_state.css")).read_text()


def test_the_snapshot_pages_have_no_inline_style(admin_client, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.HIVE_DB_PATH = tmp_path / "absent-hive.db"
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "absent-memory.db"
    listing = admin_client.get(reverse("snapshots:list"))
    assert listing.status_code == 200
    assert_no_inline_style_and_served_sheets(admin_client, listing.content.decode(), "snapshots.css")
    assert admin_client.post(reverse("snapshots:list")).status_code == 302
    [snapshot] = list_snapshots()
    assert 'id="snapshot-list"' in admin_client.get(reverse("snapshots:list")).content.decode()
    restore = admin_client.get(reverse("snapshots:restore", args=[snapshot.name]))
    assert restore.status_code == 200 and 'id="restore-plan"' in restore.content.decode()
    assert INLINE_STYLE.findall(restore.content.decode()) == []
    compare = admin_client.get(reverse("snapshots:compare"), {"before": snapshot.name, "after": "now"})
    assert compare.status_code == 200 and 'id="diff-counts"' in compare.content.decode()
    assert_no_inline_style_and_served_sheets(admin_client, compare.content.decode(), "snapshots.css")


def test_the_incident_page_has_no_inline_style(admin_client):
    from mistersmith.simulator import demo
    from supervision.models import SupervisionFailure

    demo.seed(prefix="hy", nodes=6, failures=10, sessions=0, hive=False)
    failure = SupervisionFailure.objects.order_by("pk").first()
    response = admin_client.get(reverse("incidents:page", args=[failure.pk]))
    assert response.status_code == 200
    assert_no_inline_style_and_served_sheets(admin_client, response.content.decode(), "incident.css")


def test_favicon_is_an_icon_for_anyone(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert "max-age" in response["Cache-Control"]


def test_a_403_logs_one_line_without_a_traceback(client, django_user_model, caplog):
    staff = django_user_model.objects.create_user("staff-403", is_staff=True)
    client.force_login(staff)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(reverse("snapshots:list")).status_code == 403
    [record] = [record for record in caplog.records if record.name == "django.request"]
    assert record.status_code == 403 and record.exc_info is None
    console = next(handler for handler in logging.getLogger().handlers if handler.formatter is not None)
    line = console.format(record)
    assert "Forbidden" in line and "/admin/state/snapshots/" in line
    assert "\n" not in line and "Traceback" not in line
