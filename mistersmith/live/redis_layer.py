"""The Redis channel layer with one reader per process instead of a race of every socket's receive.

channels-redis reads a process's messages (one Redis key for all the process's channels, a group
message carries the list of its local receivers) by letting every waiting ``receive`` compete:
each receive of each socket creates two tasks (the read lock and its queue), waits on both,
cancels the loser, and drops its queue once it is empty. A frame to 250 sockets of a worker thus
cost 500 tasks, 250 ``asyncio.wait`` calls and 250 new queues, a quarter of the worker's event
loop in ``bench/load_sockets.py`` (py-spy). Here one task per process reads the key (the layer's
own ``receive_single``: same blocking pop, backup queue and cleaning, so nothing is lost by a
cancellation) and puts each message into its receivers' queues; a socket's receive only waits on
its queue.

What stays as in channels-redis: the per-channel queues are bounded (``capacity``; a receiver that
stopped reading loses the oldest), a cancelled receive drops its channel's queue, messages for
channels of other processes and ``receive`` on a non-local channel are untouched. A read that fails
(Redis gone) is raised in every receive waiting at that moment, as the one receive holding the read
lock raised it before; the next receive starts a new reader. The reader stops when no receive has
waited for ``READER_IDLE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

READER_IDLE_SECONDS = 10.0


class _ReadFailed:
    """Put into a waiting receiver's queue when the process's read failed: its receive raises it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class LiveRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader: asyncio.Task | None = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self._waiting: Counter[str] = Counter()  # local channel -> receives waiting on its queue now
        self._idle_since = 0.0  # loop time when the last waiting receive got its message
        self._idle_check: asyncio.TimerHandle | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        queue = self.receive_buffer[channel]
        if queue.empty():
            self._ensure_reader(self.non_local_name(channel))
            self._waiting[channel] += 1
            try:
                item = await queue.get()
            except asyncio.CancelledError:
                self.receive_buffer.pop(channel, None)  # as channels-redis: a receiver that left
                raise
            finally:
                self._waiting[channel] -= 1
                if not self._waiting[channel]:
                    del self._waiting[channel]
                if not self._waiting:
                    self._idle_since = asyncio.get_running_loop().time()
                    self._schedule_idle_check(READER_IDLE_SECONDS)
        else:
            item = queue.get_nowait()
        if isinstance(item, _ReadFailed):
            raise item.error
        return item

    def _ensure_reader(self, real_channel: str) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None and not self._reader.done():
            if self._reader_loop is loop:
                return
            if self._reader_loop is not None and self._reader_loop.is_running() and not self._reader_loop.is_closed():
                raise RuntimeError("Two event loops are trying to receive() on one channel layer at once!")
            # The loop the reader ran on has ended (async_to_sync in tests, management commands).
        self._reader_loop = loop
        self._reader = loop.create_task(self._read(real_channel), name="live-redis-layer-reader")

    async def _read(self, real_channel: str) -> None:
        """Move the process's messages from Redis into its receivers' queues, one read at a time."""
        while True:
            try:
                receivers, message = await self.receive_single(real_channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failed = _ReadFailed(error)
                for channel in list(self._waiting):
                    self.receive_buffer[channel].put_nowait(failed)
                logger.warning("channel layer: reading %s failed: %r", real_channel, error)
                return
            for receiver in receivers if isinstance(receivers, list) else [receivers]:
                self.receive_buffer[receiver].put_nowait(message)

    def _schedule_idle_check(self, delay: float) -> None:
        if self._idle_check is not None or self._reader is None or self._reader_loop is None:
            return
        try:
            self._idle_check = self._reader_loop.call_later(delay, self._stop_if_idle)
        except RuntimeError:  # the loop is closed
            self._idle_check = None

    def _stop_if_idle(self) -> None:
        """Stop reading once no receive has waited for READER_IDLE_SECONDS (a later receive starts a
        reader). A busy process passes through moments with no receive waiting (every socket
        handling a frame at once): only a whole idle stretch stops the reader."""
        self._idle_check = None
        if self._waiting or self._reader is None or self._reader_loop is None:
            return  # waiting again: the next moment with no receive waiting schedules the check
        remaining = self._idle_since + READER_IDLE_SECONDS - self._reader_loop.time()
        if remaining > 0:
            self._schedule_idle_check(remaining)
            return
        self._reader.cancel()
        self._reader = None

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        if reader is not None and not reader.done() and self._reader_loop is asyncio.get_running_loop():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def flush(self) -> None:
        await self._stop_reader()
        await super().flush()

    async def close_pools(self) -> None:
        await self._stop_reader()
        await super().close_pools()
