"""The four JetStream streams of CONTRACTS.md §3, exactly as the runtime configures them.

``ensure_streams`` creates a missing stream and never silently changes an existing one: it
returns the differences, and only ``update=True`` applies them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

T = TypeVar("T")
HOUR = 3600
DAY = 24 * HOUR
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def _stream(
    name: str,
    subjects: list[str],
    *,
    max_age: float | None,
    max_bytes: int | None,
    max_msgs: int | None,
    max_msg_size: int,
    duplicate_window: float,
) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        max_age=max_age or 0,
        max_bytes=max_bytes or -1,
        max_msgs=max_msgs or -1,
        max_msg_size=max_msg_size,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=1,
        duplicate_window=duplicate_window,
    )


STREAMS: dict[str, StreamConfig] = {
    "AGENT_EVENTS": _stream(
        "AGENT_EVENTS",
        ["agent.*.events", "agent.*.status", "agent.*.output"],
        max_age=24 * HOUR,
        max_bytes=GIB,
        max_msgs=1_000_000,
        max_msg_size=MIB,
        duplicate_window=120,
    ),
    "SYSTEM_EVENTS": _stream(
        "SYSTEM_EVENTS",
        ["system.control", "system.health", "pool.management"],
        max_age=7 * DAY,
        max_bytes=512 * MIB,
        max_msgs=100_000,
        max_msg_size=256 * KIB,
        duplicate_window=60,
    ),
    "SUPERVISION_EVENTS": _stream(
        "SUPERVISION_EVENTS",
        ["supervision.>"],
        max_age=24 * HOUR,
        max_bytes=GIB,
        max_msgs=None,
        max_msg_size=MIB,
        duplicate_window=120,
    ),
    "DISCOVERIES": _stream(
        "DISCOVERIES",
        ["discoveries.>"],
        max_age=None,
        max_bytes=None,
        max_msgs=1_000,
        max_msg_size=64 * KIB,
        duplicate_window=120,
    ),
}

# The settings compared between the contract and a live stream.
COMPARED = [
    "subjects",
    "retention",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msg_size",
    "storage",
    "discard",
    "num_replicas",
    "duplicate_window",
]


@dataclass
class StreamReport:
    name: str
    action: str  # "created", "ok", "differs", "updated"
    differences: dict[str, tuple[object, object]]  # setting -> (wanted, found)


def differences(wanted: StreamConfig, found: StreamConfig) -> dict[str, tuple[object, object]]:
    """Settings where a live stream departs from the contract (subjects compared as sets)."""
    diffs = {}
    for setting in COMPARED:
        want, have = getattr(wanted, setting), getattr(found, setting)
        if setting == "subjects":
            want, have = sorted(want or []), sorted(have or [])
        if setting in ("max_age", "duplicate_window"):
            want, have = float(want or 0), float(have or 0)
        if want != have:
            diffs[setting] = (want, have)
    return diffs


async def ensure_streams(
    js: JetStreamContext, *, update: bool = False, streams: dict[str, StreamConfig] | None = None
) -> list[StreamReport]:
    """Create missing streams; report (or with ``update`` fix) the ones whose settings differ."""
    reports = []
    for name, wanted in (streams or STREAMS).items():
        try:
            found = (await js.stream_info(name)).config
        except NotFoundError:
            await js.add_stream(wanted)
            reports.append(StreamReport(name, "created", {}))
            continue
        diffs = differences(wanted, found)
        if diffs and update:
            try:
                await js.update_stream(wanted)
            except NatsError as error:
                raise RuntimeError(f"Stream {name} could not be updated: {error}") from error
            reports.append(StreamReport(name, "updated", diffs))
        else:
            reports.append(StreamReport(name, "differs" if diffs else "ok", diffs))
    return reports


async def info_or_none(lookup: Callable[..., Awaitable[T]], *args: str) -> T | None:
    """``js.stream_info(name)`` or ``js.consumer_info(stream, name)``, None when it does not exist
    (verify_state and /metrics report a missing stream or consumer, they do not fail on it)."""
    try:
        return await lookup(*args)
    except NotFoundError:
        return None
