"""A bridge's first start: project what each stream retains before following it live.

The runtime's streams usually exist before the console does (made by operators, an earlier
installation or another console) and hold history: 24 h of agent events, the last 1,000
discoveries, 7 days of system messages (CONTRACTS.md §3). A durable consumer made with
``DeliverPolicy.NEW`` would never see any of it, so a console attached to a runtime that already
ran would show none of its agents. A feed starts with a catch-up when its durable consumer does
not exist and it keeps no position (the agents feed's BridgePosition), or when an earlier catch-up
did not finish:

- the stream's retained range ``first..last`` (``last`` as it stood when the catch-up began) is
  read through an ephemeral consumer without acks in a child process
  (``mistersmith/jetstream/range_reader.py``: reading costs as much Python time as applying, and
  one process's Python runs on one core), a chunk at a time, and applied here by the feed's own
  apply function: one piece of code per job, so the result is what the live bridge, and
  ``rebuild_projections --from-scratch``, make;
- the child reads ahead of the chunk being applied by what the pipe buffers, and memory stays
  bounded by chunk size in bytes (``CHUNK_BYTES``);
- history makes no frames: nobody was watching it happen, and the pages load their snapshot;
- progress is a :class:`~mistersmith.live.models.CatchUp` row per feed, moved with every chunk, so the
  log, ``verify_state`` and the dashboard of any worker can say "catching up: N of M";
- the durable consumer is then made to start right after ``last``, so a message published while
  the catch-up ran is delivered live, once.

A bridge killed mid-way starts again where its catch-up stood (the row and, for agents, the
position say where). Applying is idempotent for every feed (agent events by position, discoveries
by stream sequence, restart answers by restart id), so a chunk applied twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.js.errors
from asgiref.sync import sync_to_async
from django.utils import timezone

from mistersmith.jetstream.database_work import database_work
from mistersmith.jetstream.range_reader import read_range_in_child
from mistersmith.jetstream.settings_number import number_setting
from mistersmith.live.frames import FrameBuffer, NoFrames
from mistersmith.live.models import CatchUp

logger = logging.getLogger(__name__)

# A chunk is applied in one transaction (the agents feed: one position move). Large, because a
# catch-up's cost in PostgreSQL is per agent row written, and a chunk writes each of its agents'
# rows once whatever its number of events (agents/projections.py): 10,000 agents' interleaved
# histories cost about 2.5 times less PostgreSQL time per event in chunks of 20,000 than of 5,000,
# 6 times less in chunks of 50,000 (200,000 events applied in memory, no NATS). Not larger: in a
# 1,000,000-event run with chunks of 40,000, the bridge and its reader peaked at 286 MB (the target
# is under 300). The bytes bound the memory a chunk holds (the child holds one, the pipe buffers a
# little, the parent applies one).
CHUNK_MESSAGES = 20_000
CHUNK_BYTES = 8 * 1024 * 1024
MIN_CHUNK_MESSAGES = 100


def chunk_messages() -> int:
    """``MISTERSMITH_BRIDGE_CATCH_UP_CHUNK`` (Django setting or environment): messages per chunk,
    default CHUNK_MESSAGES, at least MIN_CHUNK_MESSAGES."""
    return int(number_setting("MISTERSMITH_BRIDGE_CATCH_UP_CHUNK", default=CHUNK_MESSAGES, minimum=MIN_CHUNK_MESSAGES))


LOG_EVERY_SECONDS = 5.0

Batch = list[tuple[int, str, bytes]]
Apply = Callable[[Batch, Any, str, FrameBuffer], None]


async def consumer_exists(js: Any, stream: str, name: str) -> bool:
    try:
        await js.consumer_info(stream, name)
    except nats.js.errors.NotFoundError:
        return False
    return True


@database_work
def _open_catch_up(name: str, stream: str, first: int, last: int) -> CatchUp:
    """A new catch-up of ``first..last`` (the row of an earlier, finished one is reused: a feed
    whose consumer was deleted reads the history again, which its idempotent apply allows)."""
    record, _ = CatchUp.objects.update_or_create(
        consumer=name,
        defaults={
            "stream": stream,
            "first_sequence": first,
            "target_sequence": last,
            "applied_sequence": first - 1,
            "started_at": timezone.now(),
            "finished_at": None,
        },
    )
    return record


@database_work
def _apply_chunk(apply: Apply, chunk: Batch, stats: Any, name: str, record: CatchUp) -> None:
    """Apply a chunk with the feed's own code (its frames dropped), then note the progress."""
    apply(chunk, stats, name, NoFrames())
    record.applied_sequence = chunk[-1][0]
    CatchUp.objects.filter(pk=record.pk).update(applied_sequence=record.applied_sequence)


@database_work
def _finish(record: CatchUp) -> None:
    record.applied_sequence = max(record.applied_sequence, record.target_sequence)
    record.finished_at = timezone.now()
    record.save(update_fields=["applied_sequence", "finished_at"])


class CatchUpInterrupted(Exception):
    """The bridge was told to stop during a catch-up; its row says where the next start resumes."""


@database_work
def _unfinished(name: str) -> CatchUp | None:
    return CatchUp.objects.filter(consumer=name, finished_at__isnull=True).first()


async def catch_up(
    js: Any,
    servers: list[str],
    stream: str,
    name: str,
    apply: Apply,
    stats: Any,
    *,
    state: Any,
    position: int | None,
    stop: asyncio.Event | None = None,
) -> int | None:
    """Run the feed's catch-up if it needs one (see the module's docstring); return the sequence its
    durable consumer must start after, or None when no catch-up ran (the caller then goes on as
    before). ``state`` is the stream's state (first_seq, last_seq); ``position`` the feed's
    committed position (None when it keeps none or has none). Raises CatchUpInterrupted when
    ``stop`` is set before the catch-up ends."""
    record = await sync_to_async(_unfinished, thread_sensitive=False)(name)
    if record is None:
        if position is not None or await consumer_exists(js, stream, name):
            return None  # the position or the durable consumer knows where this feed stands
        first = state.first_seq if state.messages else state.last_seq + 1  # an empty stream: nothing to read
        record = await sync_to_async(_open_catch_up, thread_sensitive=False)(name, stream, first, state.last_seq)
    start = max(record.applied_sequence + 1, position + 1 if position is not None else 0, state.first_seq)
    target = record.target_sequence
    if start <= target:
        logger.info("%s: catching up on %s #%s..#%s", name, stream, start, target)
        await _read_and_apply(servers, stream, name, apply, stats, record, start, target, stop)
    await sync_to_async(_finish, thread_sensitive=False)(record)
    logger.info("%s: caught up on %s at #%s; following live", name, stream, target)
    return target


async def _read_and_apply(
    servers: list[str],
    stream: str,
    name: str,
    apply: Apply,
    stats: Any,
    record: CatchUp,
    start: int,
    target: int,
    stop: asyncio.Event | None,
) -> None:
    """Read ``start..target`` in a child process (mistersmith/jetstream/range_reader.py: reading
    costs as much Python time as applying, so the two run on both cores) and apply it here chunk
    by chunk, each chunk in one transaction."""
    apply_chunk = sync_to_async(_apply_chunk, thread_sensitive=False)
    total = max(1, target - record.first_sequence + 1)
    logged = time.monotonic()
    size = chunk_messages()
    chunks = read_range_in_child(servers, stream, start, target, chunk_messages=size, chunk_bytes=CHUNK_BYTES)
    try:
        async for chunk in chunks:
            if stop is not None and stop.is_set():
                raise CatchUpInterrupted(f"{name}: stopped at #{record.applied_sequence} of #{target}")
            await apply_chunk(apply, chunk, stats, name, record)
            if time.monotonic() - logged >= LOG_EVERY_SECONDS:
                logged = time.monotonic()
                done = record.applied_sequence - record.first_sequence + 1
                logger.info("%s: catching up: %s of %s (%s)", name, done, total, stream)
    finally:
        await chunks.aclose()


def unfinished(prefix: str) -> dict[str, CatchUp]:
    """The catch-ups of the bridge with ``prefix`` still running (or cut short), by feed name; what
    verify_state, /metrics and the live pages' freshness badge show as "catching up: N of M"."""
    rows = CatchUp.objects.filter(consumer__startswith=f"{prefix}-", finished_at__isnull=True)
    return {row.consumer.removeprefix(f"{prefix}-"): row for row in rows}


def progress_text(row: CatchUp) -> str:
    return f"catching up: {row.done:,} of {row.total:,}"
