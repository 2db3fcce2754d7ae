"""Secrets on disk (issue 12, item 10): var/secret_key and var/admin_password are 0600 from their
first byte (never written first and narrowed afterwards), and the admin password is never part of
what `manage.py run` prints in production."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from mistersmith.console.management.commands import run
from mistersmith.embedded import postgres_url
from mistersmith.private_files import create_private_file, read_or_create_private, replace_private_file

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_chmod_and_open_umask(monkeypatch):
    """Nothing may narrow a mode after the fact, and the umask narrows nothing: a file is private
    only if it was created so."""
    for target in (os, Path):
        monkeypatch.setattr(target, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(os, "fchmod", lambda *args, **kwargs: None)
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_a_private_file_is_0600_from_its_creation(tmp_path, no_chmod_and_open_umask):
    secret = tmp_path / "secret"
    assert create_private_file(secret, "s3cret") is True
    assert mode(secret) == 0o600 and secret.read_text() == "s3cret"
    assert create_private_file(secret, "other") is False  # an existing file is never written through
    assert secret.read_text() == "s3cret"
    replace_private_file(secret, "new")
    assert mode(secret) == 0o600 and secret.read_text() == "new"
    assert [path.name for path in tmp_path.iterdir()] == ["secret"]


def test_a_planted_link_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "secret_key").symlink_to(target)
    assert create_private_file(tmp_path / "secret_key", "key") is False
    assert target.read_text() == "untouched"


def test_an_older_loose_secret_is_narrowed(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("kept\n")
    secret.chmod(0o644)
    assert read_or_create_private(secret, "unused") == "kept"
    assert mode(secret) == 0o600


def test_the_settings_create_secret_key_0600_under_an_open_umask(tmp_path):
    """The real settings module in a fresh var directory, in a process whose umask is 0 and where
    nothing can narrow a mode afterwards."""
    environment = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    # the suite's own database: without DATABASE_URL the settings would start an embedded PostgreSQL in
    # tmp_path, whose initdb refuses to run under the test's open umask and disabled chmod
    environment.update(
        MISTERSMITH_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="mistersmith.settings",
        DATABASE_URL=postgres_url(connection.settings_dict),
    )
    script = (
        "import os, pathlib; os.umask(0); os.chmod = pathlib.Path.chmod = lambda *a, **k: None\n"
        "from django.conf import settings; print(len(settings.SECRET_KEY))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40
    assert mode(tmp_path / "secret_key") == 0o600


@pytest.mark.django_db
@pytest.mark.parametrize("production", [False, True])
def test_the_admin_password_file_and_what_run_prints(
    settings, tmp_path, monkeypatch, production, no_chmod_and_open_umask
):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    settings.VAR_DIR = tmp_path
    settings.PRODUCTION = production
    stale = tmp_path / "admin_password"
    stale.write_text("left by an earlier database\n")  # replaced, not written through
    login = run.ensure_admin_user()
    password = stale.read_text().strip()
    assert mode(stale) == 0o600 and password != "left by an earlier database"
    assert get_user_model().objects.get(username=run.ADMIN_USERNAME).check_password(password)
    again = run.ensure_admin_user()  # the existing user, as on every later start
    for printed in (login, again):
        assert (password in printed) is not production
    if production:
        assert str(stale) in login


@pytest.mark.django_db
def test_a_given_password_is_never_printed_in_production(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "given-Passw0rd-xyz")
    settings.VAR_DIR = tmp_path
    settings.PRODUCTION = True
    login = run.ensure_admin_user()
    assert "given-Passw0rd-xyz" not in login and "DJANGO_SUPERUSER_PASSWORD" in login
    assert not (tmp_path / "admin_password").exists()
