"""A NATS whose JetStream store has no room (a full disk, as near as a test gets: a server whose
file store is limited below what the streams need): clear errors, and no crash loop."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from mistersmith.jetstream.client import NatsUnavailable, SyncNats
from mistersmith.live.bridge import BridgeThread
from tests.conftest import wait_until
from tests.services import PrivateNats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_store_without_room_gives_clear_errors_and_a_backing_off_bridge(tmp_path, caplog, stop_after):
    nats = stop_after(PrivateNats(tmp_path, max_file_store="2MB").start())
    bridge = BridgeThread(consumer_prefix=f"test-full-{uuid.uuid4().hex[:8]}", url=nats.url)
    client = SyncNats(nats.url)
    try:
        with caplog.at_level(logging.WARNING, logger="mistersmith"):
            with pytest.raises(NatsUnavailable, match=r"(?i)insufficient|resources|storage"):
                client.publish("system.control", {"RestartNode": {}}, timeout=1)
            started = time.monotonic()
            bridge.start()
            wait_until(
                lambda: len([r for r in caplog.records if "starts again" in r.getMessage()]) >= 3,
                timeout=30,
                what="the bridge to try again three times",
            )
            elapsed = time.monotonic() - started
        errors = [r for r in caplog.records if r.name == "mistersmith.live.bridge" and r.levelno >= logging.ERROR]
        assert errors and any("resources" in (r.exc_text or r.getMessage()).lower() for r in errors)
        assert elapsed >= 1 + 2  # backed off 1 s, then 2 s: not a crash loop
        assert bridge.is_alive() and not bridge.ready.is_set()
    finally:
        bridge.stop()
        client.close()
