"""The dashboard's reads from NATS: stream health, the runtime's pool, the latest events.

Stream health and the runtime's last health report are read in one round of JetStream API
requests run together (one ``run()``), so a dashboard costs a handful of milliseconds of NATS
time. When NATS is away, every function here raises ``NatsUnavailable``; the page then says so
in the panels that need NATS and shows the rest.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from nats.js.errors import NotFoundError

from agents.events import parse_agent_event, subject_agent_id
from mistersmith.jetstream import summaries
from mistersmith.jetstream.client import NatsUnavailable, connection
from mistersmith.jetstream.messages import InvalidMessage, decode_json, open_envelope
from mistersmith.jetstream.reader import StreamMessage, read_latest
from mistersmith.jetstream.streams import STREAMS
from mistersmith.live.bridge import FEEDS
from mistersmith.live.positions import bridge_consumer_prefix
from supervision.events import CONTROL_SUBJECT, control_variant

HEALTH_SUBJECT = "system.health"
HEALTH_FIELDS = ("pool_active", "pool_capacity", "pool_available", "healthy")
LATEST_EVENTS = 20
HIDDEN_AGENT_EVENTS = ("Heartbeat",)  # the summaries leave out what only says "still alive"


def _limit(value: float | int | None) -> float | int | None:
    """A stream limit, or None where the stream has none (NATS says -1 or 0)."""
    return value if value and value > 0 else None


def _percent(used: float, limit: float | int | None) -> float | None:
    return round(100 * used / limit, 1) if limit else None


async def _oldest_time(js: Any, stream: str, first_seq: int) -> dt.datetime | None:
    try:
        return (await js.get_msg(stream, seq=first_seq)).time
    except NotFoundError:
        return None


async def _consumer(js: Any, stream: str, name: str) -> dict[str, Any]:
    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        return {"name": name, "exists": False, "pending": None, "ack_pending": None}
    return {"name": name, "exists": True, "pending": info.num_pending, "ack_pending": info.num_ack_pending}


async def _stream(js: Any, name: str, consumers: list[str], now: dt.datetime) -> dict[str, Any]:
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return {"name": name, "exists": False}
    state, config = info.state, info.config
    limits = {
        "max_msgs": _limit(config.max_msgs),
        "max_bytes": _limit(config.max_bytes),
        "max_age_seconds": _limit(config.max_age),
    }
    oldest = await _oldest_time(js, name, state.first_seq) if state.messages and limits["max_age_seconds"] else None
    age = (now - oldest).total_seconds() if oldest else 0.0
    used = {
        "msgs": _percent(state.messages, limits["max_msgs"]),
        "bytes": _percent(state.bytes, limits["max_bytes"]),
        "age": _percent(max(age, 0.0), limits["max_age_seconds"]),
    }
    known = [value for value in used.values() if value is not None]
    return {
        "name": name,
        "exists": True,
        "messages": state.messages,
        "bytes": state.bytes,
        "first_seq": state.first_seq,
        "last_seq": state.last_seq,
        "consumer_count": state.consumer_count,
        "limits": limits,
        "used_percent": used,
        "most_used_percent": max(known) if known else None,
        "consumers": list(await asyncio.gather(*(_consumer(js, name, consumer) for consumer in consumers))),
    }


async def _stream_health(js: Any, prefix: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    consumers: dict[str, list[str]] = {name: [] for name in STREAMS}
    for feed in FEEDS:
        consumers.setdefault(feed.stream, []).append(feed.consumer_name(prefix))
    return list(await asyncio.gather(*(_stream(js, name, consumers[name], now) for name in STREAMS)))


def stream_health() -> list[dict[str, Any]]:
    """Per stream of the contract: size, limits, percent of each limit used, consumers, and the
    console bridge's durable consumers with their lag (pending) and unacknowledged (ack pending)."""
    nats = connection()
    return nats.run(_stream_health(nats.client().jetstream(), bridge_consumer_prefix()))


def health_report(payload: Any) -> dict[str, Any] | None:
    """The pool fields of a health message: bare, or under one variant name (``{"SystemHealth": {...}}``)."""
    body = open_envelope(payload).payload
    if isinstance(body, dict) and len(body) == 1 and isinstance(next(iter(body.values())), dict):
        body = next(iter(body.values()))
    if not isinstance(body, dict) or not any(field in body for field in HEALTH_FIELDS):
        return None
    return {field: body.get(field) for field in HEALTH_FIELDS}


async def _last_health(js: Any) -> dict[str, Any] | None:
    try:
        message = await js.get_last_msg("SYSTEM_EVENTS", HEALTH_SUBJECT)
    except NotFoundError:
        return None
    try:
        report = health_report(decode_json(message.data or b""))
    except InvalidMessage:
        report = None
    if report is None:
        return None
    return {**report, "sequence": message.seq, "time": message.time.isoformat() if message.time else None}


def runtime_health() -> dict[str, Any] | None:
    """The runtime's pool from its newest ``system.health`` message (None if it never sent one).

    Read by subject with JetStream's last-message-by-subject lookup: the newest health report
    however many other SYSTEM_EVENTS messages came after it.
    """
    nats = connection()
    return nats.run(_last_health(nats.client().jetstream()))


def summarize(message: StreamMessage) -> str | None:
    """One line for a user who may not read raw messages (no event-log permission): what
    happened, as the agents and supervision topics tell it; None for what such a user skips."""
    if message.stream == "AGENT_EVENTS":
        if not message.subject.endswith(".events"):
            return None
        if message.truncated:  # the reader keeps the start of a large payload only: not parseable
            return f"large agent event on {message.subject}"
        try:
            event = parse_agent_event(decode_json(message.data), subject_agent=subject_agent_id(message.subject))
        except InvalidMessage:
            return f"unreadable agent event on {message.subject}"
        if event.kind in HIDDEN_AGENT_EVENTS:
            return None
        status = event.new_state or {"Terminated": "Terminated", "Error": "Error"}.get(event.kind)
        return f"{event.kind} agent {event.agent_id}" + (f" → {status}" if status else "")
    if message.stream == "SYSTEM_EVENTS":
        if message.subject != CONTROL_SUBJECT or message.truncated:
            return None
        try:
            name, body = control_variant(decode_json(message.data))
        except InvalidMessage:
            return None
        body = body if isinstance(body, dict) else {}
        if name == "RestartNode":
            return f"restart requested for node {body.get('node_id')}"
        if name == "RestartCompleted":
            return f"restart {'succeeded' if body.get('success') else 'failed'} on node {body.get('node_id')}"
        return None
    if message.stream == "SUPERVISION_EVENTS":
        # task allocation, lifecycle, health, errors, the console's own: a line, else the subject
        line = None if message.truncated else summaries.summarize(message.stream, message.subject, message.data)
        return line or message.subject
    return None


def latest_events(*, raw: bool, streams: list[str], count: int = LATEST_EVENTS) -> dict[str, Any]:
    """The newest ``count`` messages across ``streams``, newest first, and per stream the last
    sequence read (live events at or below it are already in the list).

    ``raw``: the event log's shape (subject and excerpt); otherwise the one-line summaries of
    :func:`summarize`, and the messages that have none left out.
    """
    messages: list[StreamMessage] = []
    seen: dict[str, int] = {}
    for stream in streams:
        found = read_latest(stream, count=count)
        if found:
            seen[stream] = max(m.sequence for m in found)
        messages.extend(found)
    messages.sort(key=lambda m: (m.time, m.sequence), reverse=True)
    items = []
    for message in messages:
        if raw:
            event = message.as_event()
            item = {**event, "text": event["summary"] or event["excerpt"]}
        else:
            text = summarize(message)
            if text is None:
                continue
            item = {
                "stream": message.stream,
                "sequence": message.sequence,
                "subject": message.subject,
                "time": message.time.isoformat(),
                "text": text,
            }
        items.append(item)
        if len(items) == count:
            break
    return {"items": items, "seen": seen}


__all__ = ["NatsUnavailable", "health_report", "latest_events", "runtime_health", "stream_health", "summarize"]
