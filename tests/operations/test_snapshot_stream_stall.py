"""A stream restore against a NATS that stops acknowledging ends with a clear SnapshotError instead of
waiting forever: the server (a private one) is frozen with SIGSTOP mid-restore."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import uuid

import msgpack
import nats
import pytest

from mistersmith.operations.snapshots import streams as snapshot_streams
from mistersmith.operations.snapshots.api import SnapshotError
from tests.services import PrivateNats


def member(count: int, agent: uuid.UUID) -> io.BytesIO:
    packed = b"".join(
        msgpack.packb([sequence, f"agent.{agent}.events", None, b'{"Heartbeat":{}}', None])
        for sequence in range(1, count + 1)
    )
    return io.BytesIO(packed)


def test_a_restore_whose_acks_stop_coming_fails_clearly(tmp_path, monkeypatch, stop_after):
    server = stop_after(PrivateNats(tmp_path).start())
    monkeypatch.setattr(snapshot_streams, "ACK_TIMEOUT_SECONDS", 1)
    frozen: list[bool] = []

    def freeze_after_the_first_ack(_count: int) -> None:
        if not frozen:  # the first window is acknowledged; then the server stops answering
            os.kill(server.process.pid, signal.SIGSTOP)
            frozen.append(True)

    async def restore() -> None:
        client = await nats.connect(server.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            source = member(snapshot_streams.PUBLISH_WINDOW + 500, uuid.uuid4())
            await snapshot_streams.republish(
                client.jetstream(), "AGENT_EVENTS", source, purge=False, on_message=freeze_after_the_first_ack
            )
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            await client.close()

    with pytest.raises(SnapshotError, match=r"NATS did not acknowledge message \d+ of AGENT_EVENTS within 1 s"):
        asyncio.run(asyncio.wait_for(restore(), 60))
    assert frozen
