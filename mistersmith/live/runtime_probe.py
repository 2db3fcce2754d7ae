"""The one requester of runtime health: SystemHealth and PoolStatus, asked by the leading bridge.

It runs inside the bridge's leader (mistersmith/live/bridge.py ``_lead``), so an installation has one
requester however many workers and viewers it has. Each request is stored by SYSTEM_EVENTS (the
stream holds ``system.control``), so the rate is bounded: every
``MISTERSMITH_RUNTIME_PROBE_SECONDS`` (default 30, at least 5). The answers go to PostgreSQL
(:class:`~mistersmith.live.models.RuntimeProbe`), where every worker's pages read them.

No database connection is held while waiting for NATS: each write is its own short unit of work
on a worker thread, and the connection goes back to the pool after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone
from nats.errors import Error as NatsError

from mistersmith.jetstream.database_work import database_work
from mistersmith.jetstream.runtime_health import PROBE_KINDS, ask
from mistersmith.jetstream.settings_number import number_setting
from mistersmith.live.models import RuntimeProbe

logger = logging.getLogger(__name__)

DEFAULT_PROBE_SECONDS = 30.0
MIN_PROBE_SECONDS = 5.0
ANSWER_TIMEOUT_SECONDS = 5.0


def probe_interval() -> float:
    """``MISTERSMITH_RUNTIME_PROBE_SECONDS`` (Django setting or environment), default 30, min 5."""
    return number_setting("MISTERSMITH_RUNTIME_PROBE_SECONDS", default=DEFAULT_PROBE_SECONDS, minimum=MIN_PROBE_SECONDS)


def answer_timeout(interval: float) -> float:
    """How long one request waits for its answer: 5 s, less when requests come more often."""
    return min(ANSWER_TIMEOUT_SECONDS, interval / 2)


def _unit_of_work(function: Any) -> Any:
    """``function`` as database work (mistersmith.jetstream.database_work), awaitable off the event loop."""
    return sync_to_async(database_work(function), thread_sensitive=False)


record_asked = _unit_of_work(RuntimeProbe.record_asked)
record_answer = _unit_of_work(RuntimeProbe.record_answer)
record_silence = _unit_of_work(RuntimeProbe.record_silence)


async def probe_once(client: Any, kind: str, *, timeout: float) -> str:
    """Ask once and record what happened; returns the outcome ("answered", "error", "no_answer")."""
    request_id = str(uuid.uuid4())
    asked_at = timezone.now()
    await record_asked(kind, request_id, asked_at)
    try:
        answer = await ask(client, kind, timeout=timeout, message_id=request_id)
    except (NatsError, OSError) as error:
        await record_silence(kind, asked_at=asked_at, reason=f"the request could not be sent: {error}")
        return "no_answer"
    if answer is None:
        await record_silence(kind, asked_at=asked_at, reason=f"no answer within {timeout:g} s")
        return "no_answer"
    await record_answer(
        kind, ok=answer.ok, message=answer.message, data=answer.data, error=answer.error, at=timezone.now()
    )
    return "answered" if answer.ok else "error"


async def probe_runtime(client: Any, stop: asyncio.Event, *, interval: float | None = None) -> None:
    """Ask both kinds (at the same time) every ``interval`` s until ``stop``. A failure of one round
    (PostgreSQL away, say) is logged and the next round comes as usual: never a traceback upwards."""
    interval = interval or probe_interval()
    timeout = answer_timeout(interval)
    while not stop.is_set():
        round_ = asyncio.ensure_future(
            asyncio.gather(*(probe_once(client, kind, timeout=timeout) for kind in PROBE_KINDS), return_exceptions=True)
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({round_, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not round_.done():  # the bridge stops: it does not wait out a request's timeout
            round_.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await round_
            return
        for kind, outcome in zip(PROBE_KINDS, round_.result(), strict=True):
            if isinstance(outcome, BaseException):
                logger.warning("runtime %s request failed: %s", kind, outcome)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
