"""Issue 12, item 2: the live socket opens only from the site's own whole origin (scheme, host and port)
or a CSRF_TRUSTED_ORIGINS entry, through the real ASGI application; and ``check --deploy`` refuses
``ALLOWED_HOSTS=*`` in production."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from mistersmith.asgi import application
from tests.live.test_live_socket import session_cookie
from tests.test_security import ROOT, production_env

pytestmark = pytest.mark.django_db(transaction=True)


async def opens(cookie: bytes, *, origin: bytes | None, host: bytes, scheme: str = "ws", extra=()) -> bool:
    headers = [(b"host", host), (b"cookie", cookie), *extra]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected


@pytest.fixture
def cookie(django_user_model) -> bytes:
    user = django_user_model.objects.create_user(f"o{uuid.uuid4().hex[:8]}", password="x-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent"))
    return session_cookie(user)


async def test_the_sites_own_origin_opens_the_socket(cookie):
    assert await opens(cookie, origin=b"http://localhost:8000", host=b"localhost:8000")
    assert await opens(cookie, origin=b"http://LOCALHOST:80", host=b"localhost")  # default port, any case
    assert await opens(cookie, origin=b"https://localhost:8443", host=b"localhost:8443", scheme="wss")


async def test_another_port_or_scheme_of_the_same_host_is_refused(cookie):
    assert not await opens(cookie, origin=b"http://localhost:9000", host=b"localhost:8000")
    assert not await opens(cookie, origin=b"http://localhost", host=b"localhost:8000")
    assert not await opens(cookie, origin=b"https://localhost", host=b"localhost")
    assert not await opens(cookie, origin=b"http://localhost:8443", host=b"localhost:8443", scheme="wss")


async def test_no_origin_a_null_origin_and_a_host_not_allowed_are_refused(cookie):
    assert not await opens(cookie, origin=None, host=b"localhost")
    assert not await opens(cookie, origin=b"null", host=b"localhost")
    assert not await opens(cookie, origin=b"http://localhost/page", host=b"localhost")
    # DNS rebinding: the attacker's name points at the console; its Host is not in ALLOWED_HOSTS.
    assert not await opens(cookie, origin=b"http://rebound.example", host=b"rebound.example")


async def test_a_proxy_marked_https_request_has_the_https_origin(cookie, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded = ((b"x-forwarded-proto", b"https"),)
    assert await opens(cookie, origin=b"https://localhost", host=b"localhost", extra=forwarded)
    assert not await opens(cookie, origin=b"http://localhost", host=b"localhost", extra=forwarded)
    assert not await opens(cookie, origin=b"https://localhost", host=b"localhost")


async def test_csrf_trusted_origins_are_allowed_whole(cookie, settings):
    settings.ALLOWED_HOSTS = ["localhost", "console.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.com:8443", "https://*.corp.example"]
    assert await opens(cookie, origin=b"https://console.example.com:8443", host=b"localhost")
    assert not await opens(cookie, origin=b"https://console.example.com", host=b"localhost")
    assert not await opens(cookie, origin=b"http://console.example.com:8443", host=b"localhost")
    assert await opens(cookie, origin=b"https://a.corp.example", host=b"localhost")
    assert not await opens(cookie, origin=b"https://a.corp.example:444", host=b"localhost")
    assert not await opens(cookie, origin=b"https://evilcorp.example", host=b"localhost")


def deploy_check(tmp_path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={**production_env(tmp_path), **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("hosts", ["*", "console.example.com,*"])
def test_deploy_check_refuses_a_wildcard_allowed_host_in_production(tmp_path, hosts):
    result = deploy_check(tmp_path, ALLOWED_HOSTS=hosts)
    assert result.returncode != 0
    assert "mistersmith.E012" in result.stderr + result.stdout
    assert 'ALLOWED_HOSTS contains "*" in production' in result.stderr + result.stdout


def test_deploy_check_passes_listed_hosts_in_production(tmp_path):
    result = deploy_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mistersmith.E012" not in result.stdout + result.stderr
