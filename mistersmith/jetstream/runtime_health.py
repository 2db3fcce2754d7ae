"""Asking the runtime how it is: SystemHealth and PoolStatus requests on ``system.control``.

The runtime publishes nothing on ``system.health``; it answers these two requests
(message/handler.rs, SystemMessageHandler) by publishing to the request's ``reply_to`` an
envelope whose payload is ``{"Success": {"message", "data"}}`` and whose correlation_id is null.
So each request names an inbox of its own, and whatever arrives there is its answer.

A request is sent in the runtime's own form (SystemTime timestamp, explicit nulls) so the
runtime's serde parser accepts it. A runtime that does not answer (its router never reading the
subscription is a known state of the version the seed describes) is an ordinary outcome here:
:func:`ask` returns None after its timeout, it never raises for silence.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.jetstream.messages import InvalidMessage, decode_json, open_envelope, tagged_variant

CONTROL_SUBJECT = "system.control"
SYSTEM_HEALTH = "SystemHealth"
POOL_STATUS = "PoolStatus"
PROBE_KINDS = (SYSTEM_HEALTH, POOL_STATUS)


def system_time(seconds: float | None = None) -> dict[str, int]:
    """std::time::SystemTime as serde writes it."""
    nanos = time.time_ns() if seconds is None else int(seconds * 1_000_000_000)
    return {"secs_since_epoch": nanos // 1_000_000_000, "nanos_since_epoch": nanos % 1_000_000_000}


def request_envelope(kind: str, reply_to: str, *, message_id: str | None = None) -> dict[str, Any]:
    """A SystemHealth or PoolStatus request exactly as MessageEnvelope<SystemMessage> serializes."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"Unknown request {kind!r}; use one of {', '.join(PROBE_KINDS)}.")
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "timestamp": system_time(),
        "source_agent": None,
        "target_agent": None,
        "correlation_id": None,
        "payload": {kind: {"reply_to": reply_to}},
    }


@dataclass(frozen=True)
class Answer:
    """The runtime's reply: ``ok`` with its message and data, or its error text."""

    ok: bool
    message: str
    data: Any
    error: str = ""


def parse_answer(raw: bytes) -> Answer:
    """A CommandResponse envelope (bare payloads accepted too); InvalidMessage for anything else."""
    name, body = tagged_variant(open_envelope(decode_json(raw)).payload)
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{name} has no fields")
    if name == "Success":
        message = body.get("message")
        return Answer(ok=True, message=message if isinstance(message, str) else "", data=body.get("data"))
    if name == "Error":
        error = body.get("error")
        code = body.get("code")
        text = error if isinstance(error, str) else json.dumps(error)
        return Answer(ok=False, message="", data=None, error=f"{text} (code {code})" if code is not None else text)
    raise InvalidMessage("unknown_variant", name[:64])


async def ask(client: Any, kind: str, *, timeout: float, message_id: str | None = None) -> Answer | None:
    """Send one request and wait up to ``timeout`` s for its answer on an inbox of its own.

    None: nobody answered in time. An answer that cannot be read comes back as an Answer with
    ``ok=False`` and the reason. NATS errors while publishing are the caller's to handle.
    """
    inbox = client.new_inbox()
    subscription = await client.subscribe(inbox, max_msgs=1)
    try:
        payload = json.dumps(request_envelope(kind, inbox, message_id=message_id)).encode()
        await client.publish(CONTROL_SUBJECT, payload)
        await client.flush(timeout)
        try:
            reply = await subscription.next_msg(timeout)
        except (TimeoutError, NatsTimeoutError):
            return None
    finally:
        # already gone after its one message, or the connection closed: nothing to undo
        with contextlib.suppress(NatsError):
            await subscription.unsubscribe()
    try:
        return parse_answer(reply.data)
    except InvalidMessage as error:
        return Answer(ok=False, message="", data=None, error=f"unreadable answer: {error}")
