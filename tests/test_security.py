"""Security settings: the production deploy check, the headers, and login throttling (django-axes).

Production settings are read at import, so they are checked in a child process with the
documented production environment (docs/security.md); development is this test process itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "right-pass-123"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The production environment of docs/security.md; the services are never contacted here."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "DJANGO_", "MISTERSMITH_", "LOGIN_")) and key != "DEBUG"
    }
    env.update(
        MISTERSMITH_ENV="production",
        MISTERSMITH_VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
        ALLOWED_HOSTS="console.example.com",
        CSRF_TRUSTED_ORIGINS="https://console.example.com",
        DATABASE_URL="postgresql://console@db.example.com:5432/mistersmith",
        NATS_URL="nats://nats.example.com:4222",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO=https",
        DJANGO_SETTINGS_MODULE="mistersmith.settings",
        **extra,
    )
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_production_settings_pass_the_deploy_check_without_a_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_preloading_hsts_is_the_operators_choice(tmp_path):
    """With SECURE_HSTS_PRELOAD=1 nothing is silenced and the header says preload."""
    code = (
        "import django, json; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.SECURE_HSTS_PRELOAD, s.SILENCED_SYSTEM_CHECKS]))"
    )
    result = run_python(code, production_env(tmp_path, SECURE_HSTS_PRELOAD="1"))
    assert json.loads(result.stdout.splitlines()[-1]) == [True, []], result.stderr


PRODUCTION_HEADERS = """
import django, json
django.setup()
from django.test import Client
client = Client(HTTP_HOST="console.example.com")
plain = client.get("/admin/")
probe = client.get("/healthz")
secure = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")
login = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "probe": probe.status_code,
    "hsts": secure.get("Strict-Transport-Security"),
    "plain_hsts": probe.get("Strict-Transport-Security"),
    "cookies": {name: [bool(c["secure"]), bool(c["httponly"])] for name, c in login.cookies.items()},
}))
"""


def test_production_redirects_to_https_sends_hsts_and_secures_cookies(tmp_path):
    result = run_python(PRODUCTION_HEADERS, production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["plain"] == [301, "https://console.example.com/admin/"]
    assert seen["probe"] == 200, "health probes over plain http are not redirected"
    assert seen["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["plain_hsts"] is None, "HSTS only on https"
    assert seen["cookies"]["csrftoken"] == [True, True]


def test_development_serves_plain_http_with_the_security_headers(client):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    assert not settings.SECURE_SSL_REDIRECT and not settings.SESSION_COOKIE_SECURE
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and "unsafe-inline" not in response["Content-Security-Policy"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["connect-src"] == "'self'"


# --- Login throttling ----------------------------------------------------------------------------


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:8]}", password=PASSWORD, is_staff=True)


def log_in(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def fail(client: Client, username: str, times: int, address: str = "10.0.0.1") -> None:
    """Failed logins below the limit: each shows the form again."""
    for _ in range(times):
        response = log_in(client, username, "wrong-pass", address)
        assert response.status_code == 200, "a failed login below the limit shows the form again"


def lock_out(username: str) -> None:
    fail(Client(), username, settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(Client(), username, "wrong-pass").status_code == 429, "the limit-th failure locks"


def test_too_many_failures_lock_the_login_even_with_the_right_password(operator):
    client = Client()
    fail(client, operator.username, settings.AXES_FAILURE_LIMIT - 1)
    locked = log_in(client, operator.username, "wrong-pass")
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert log_in(client, operator.username, PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session


def test_lockout_is_per_username_whatever_the_address(operator):
    client = Client()
    fail(client, operator.username, settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, operator.username, "wrong-pass").status_code == 429
    # The locked username is locked from every address, even with the right password...
    assert log_in(Client(), operator.username, PASSWORD, address="10.0.0.2").status_code == 429
    # ...while another user from the same address still logs in.
    other = get_user_model().objects.create_user("other-" + uuid.uuid4().hex[:8], password=PASSWORD, is_staff=True)
    assert log_in(Client(), other.username, PASSWORD).status_code == 302


def test_failures_from_rotating_addresses_lock_the_username(operator):
    """Address rotation: one failure from each of LOGIN_FAILURE_LIMIT addresses is the limit."""
    addresses = [f"198.51.100.{n}" for n in range(1, settings.AXES_FAILURE_LIMIT + 1)]
    for address in addresses[:-1]:
        assert log_in(Client(), operator.username, "wrong-pass", address).status_code == 200
    assert log_in(Client(), operator.username, "wrong-pass", addresses[-1]).status_code == 429
    assert log_in(Client(), operator.username, PASSWORD, address="203.0.113.7").status_code == 429
    assert log_in(Client(), operator.username, PASSWORD, address=addresses[0]).status_code == 429


def recorded_addresses(username: str) -> set[str]:
    from axes.models import AccessAttempt

    return set(AccessAttempt.objects.filter(username=username).values_list("ip_address", flat=True))


def test_forwarded_for_from_an_untrusted_peer_is_ignored(operator):
    """No proxy is trusted by default: a client writing a fresh X-Forwarded-For per attempt is
    still counted, and recorded, under its own REMOTE_ADDR."""
    assert settings.TRUSTED_PROXIES == []
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        response = Client().post(
            reverse("admin:login"),
            {"username": operator.username, "password": "wrong-pass", "next": "/admin/"},
            REMOTE_ADDR="192.0.2.10",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}",
        )
        assert response.status_code == 200
    assert recorded_addresses(operator.username) == {"192.0.2.10"}


def test_forwarded_for_from_a_trusted_proxy_names_the_client(operator, settings):
    settings.TRUSTED_PROXIES = ["10.9.0.0/16"]
    for client_address in ("203.0.113.1", "203.0.113.2"):
        response = Client().post(
            reverse("admin:login"),
            {"username": operator.username, "password": "wrong-pass", "next": "/admin/"},
            REMOTE_ADDR="10.9.0.5",
            # A spoofed first hop, the client as the outer proxy saw it, then the outer proxy itself.
            HTTP_X_FORWARDED_FOR=f"1.1.1.1, {client_address}, 10.9.3.3",
        )
        assert response.status_code == 200
    assert recorded_addresses(operator.username) == {"203.0.113.1", "203.0.113.2"}
    # A peer outside the trusted networks is its own address, whatever it forwards.
    log_in(Client(), operator.username, "wrong-pass", address="192.0.2.99")
    assert "192.0.2.99" in recorded_addresses(operator.username)


def test_an_invalid_trusted_proxy_stops_the_start(tmp_path):
    result = run_python(
        "import django; django.setup()", production_env(tmp_path, TRUSTED_PROXIES="10.0.0.5,proxy.local")
    )
    assert result.returncode != 0
    assert "TRUSTED_PROXIES" in result.stderr and "proxy.local" in result.stderr


def test_deploy_check_warns_when_throttling_is_off_in_production(tmp_path):
    def deploy_check(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=production_env(tmp_path, **extra),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    off = deploy_check(LOGIN_THROTTLING="0")
    assert off.returncode != 0
    assert "mistersmith.W013" in off.stdout + off.stderr
    assert "Login throttling is off in production" in off.stdout + off.stderr


def test_a_successful_login_resets_the_count(operator):
    fail(Client(), operator.username, settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(Client(), operator.username, PASSWORD).status_code == 302
    fail(Client(), operator.username, settings.AXES_FAILURE_LIMIT - 1)  # would lock without the reset
    assert log_in(Client(), operator.username, PASSWORD).status_code == 302


def test_login_works_again_after_the_cool_off_or_a_reset(operator):
    from axes.models import AccessAttempt
    from axes.utils import reset

    lock_out(operator.username)
    assert log_in(Client(), operator.username, PASSWORD).status_code == 429
    # The cool-off elapses: the attempts are older than AXES_COOLOFF_TIME (hours).
    AccessAttempt.objects.filter(username=operator.username).update(
        attempt_time=AccessAttempt.objects.get(username=operator.username).attempt_time
        - timedelta(hours=settings.AXES_COOLOFF_TIME, seconds=1)
    )
    response = log_in(Client(), operator.username, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"

    lock_out(operator.username)
    assert log_in(Client(), operator.username, PASSWORD).status_code == 429
    reset(username=operator.username)  # what `manage.py axes_reset_username` and the admin do
    assert log_in(Client(), operator.username, PASSWORD).status_code == 302
