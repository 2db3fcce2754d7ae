"""Streams: created as the contract says, never changed silently."""

from __future__ import annotations

import dataclasses
import uuid

import nats
import pytest
from django.core.management import call_command

from mistersmith.jetstream.streams import STREAMS, differences, ensure_streams


def test_contract_settings_are_exact():
    agent = STREAMS["AGENT_EVENTS"]
    assert agent.subjects == ["agent.*.events", "agent.*.status", "agent.*.output"]
    assert (agent.max_age, agent.max_bytes, agent.max_msgs, agent.max_msg_size, agent.duplicate_window) == (
        86400,
        1024**3,
        1_000_000,
        1024**2,
        120,
    )
    system = STREAMS["SYSTEM_EVENTS"]
    assert (system.max_age, system.max_bytes, system.max_msgs, system.max_msg_size, system.duplicate_window) == (
        7 * 86400,
        512 * 1024**2,
        100_000,
        256 * 1024,
        60,
    )
    assert STREAMS["DISCOVERIES"].max_msgs == 1000 and STREAMS["DISCOVERIES"].max_msg_size == 64 * 1024
    assert all(s.num_replicas == 1 and s.storage.value == "file" and s.discard.value == "old" for s in STREAMS.values())


def test_the_command_creates_or_confirms_the_contract_streams(nats_url, capsys):
    call_command("ensure_streams")
    out = capsys.readouterr().out
    for name in STREAMS:
        assert f"{name}: created" in out or f"{name}: ok" in out


def unique_copy(name: str) -> dict:
    """A contract stream under a name and subjects of its own, so a test may change it freely."""
    tag = uuid.uuid4().hex[:8]
    config = dataclasses.replace(STREAMS[name], name=f"T{tag}_{name}", subjects=[f"t{tag}.{name.lower()}.>"])
    return {config.name: config}


async def test_a_differing_stream_is_reported_then_updated_only_when_asked(nats_url):
    client = await nats.connect(nats_url)
    js = client.jetstream()
    streams = unique_copy("SYSTEM_EVENTS")
    ((name, config),) = streams.items()
    try:
        assert [r.action for r in await ensure_streams(js, streams=streams)] == ["created"]
        await js.update_stream(dataclasses.replace(config, max_msgs=5))
        (report,) = await ensure_streams(js, streams=streams)
        assert report.action == "differs" and report.differences == {"max_msgs": (100_000, 5)}
        assert (await js.stream_info(name)).config.max_msgs == 5  # untouched
        (report,) = await ensure_streams(js, streams=streams, update=True)
        assert report.action == "updated"
        assert differences(config, (await js.stream_info(name)).config) == {}
    finally:
        await js.delete_stream(name)
        await client.close()


def test_unreachable_nats_is_a_command_error(settings):
    from django.core.management.base import CommandError

    from mistersmith.jetstream import client as console_nats

    settings.NATS_URL = "nats://127.0.0.1:9"
    console_nats.nats_url.cache_clear()
    try:
        with pytest.raises(CommandError, match="unavailable"):
            call_command("ensure_streams")
    finally:
        console_nats.nats_url.cache_clear()
