"""Valid and hostile runtime messages, for the property tests and the bridge fuzz run.

Valid messages follow CONTRACTS.md §3-4: enveloped or bare, both timestamp forms, externally
tagged variants, unit variants as bare strings ("Startup"), explicit nulls for Option::None, and
texts as long as the streams allow (whole agent replies: tens or hundreds of KB). Hostile ones are everything a broken or malicious publisher could send: random
bytes, invalid UTF-8, deep nesting, huge strings and numbers, NaN and infinities, NUL and lone
surrogates, wrong types, unknown variants, JSON in other encodings.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from agents.lifecycle import AgentState
from agents.models import DiscoveryType

AGENT_VARIANTS = ("Spawned", "StateChanged", "Terminated", "Error", "Output", "Heartbeat")
KNOWN_REASONS = {
    "not_json",
    "too_deep",
    "bad_timestamp",
    "bad_field",
    "not_externally_tagged",
    "unknown_variant",
    "subject_mismatch",
    "bad_state",
    "wrong_correlation",
}

# Text as hostile as JSON can carry: NUL, other controls, RTL override, zero-width, emoji, lone surrogates.
NASTY_CHARACTERS = ["\x00", "\x1b", "\u202e", "\u200b", "\ufeff", "\U0001f600", "\ud800", "\udfff", "<", '"', "\\"]
nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(st.sampled_from(NASTY_CHARACTERS) | st.characters(), max_size=30),
    st.sampled_from(
        [
            "<script>window.__pwned=1</script>",
            '"><img src=x onerror="window.__pwned=1">',
            "'; DROP TABLE agents; --",
            "Robert'); DELETE FROM discoveries;--",
            "\u202egnp.exe",
            "a\x00b",
            "\ud83d",
        ]
    ),
)
# Long texts, built by repetition so that drawing one stays cheap: past the pages' 2,000-character
# preview and the old cuts (100,000 for output, 10,000 for discovery content, 200 for related_to).
long_text = st.builds(
    lambda piece, times: piece * times,
    st.text(st.sampled_from(NASTY_CHARACTERS) | st.characters(), min_size=1, max_size=8),
    st.integers(min_value=2001, max_value=30_000),
)
# An agent's Output or Error text: up to what AGENT_EVENTS takes (1 MiB a message, envelope included).
agent_text = nasty_text | long_text | st.just("r" * 150_000)
# A discovery's content or related_to: up to what DISCOVERIES takes (64 KiB a message).
discovery_text = st.text(min_size=1, max_size=200) | long_text.map(lambda text: text[:15_000]).filter(bool)
big_int = st.one_of(st.integers(), st.integers(min_value=2**31 - 2, max_value=2**80), st.integers(max_value=-(2**31)))
json_scalar = st.none() | st.booleans() | big_int | st.floats(allow_nan=False, allow_infinity=False) | nasty_text
json_values = st.recursive(
    json_scalar,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON bytes as a publisher writes them (ASCII escapes, so lone surrogates become \\uXXXX)."""
    return json.dumps(value).encode()


# --- the runtime's own messages, for tests that publish or answer as the runtime does ----------------

# AgentConfig::default() as serde writes it (CONTRACTS.md §2): every field, in the struct's order.
AGENT_CONFIG_DEFAULT: dict[str, Any] = {
    "model": "claude-3-5-sonnet-20241022",
    "max_turns": None,
    "allowed_tools": None,
    "enable_mcp": True,
    "timeout_seconds": 300,
    "memory_limit_mb": 512,
}


def runtime_config(**fields: Any) -> dict[str, Any]:
    """AgentConfig as serde writes it: AgentConfig::default() with ``fields`` changed (e.g.
    ``memory_limit_mb=None``, an agent without a memory limit: Option::None is an explicit null)."""
    unknown = set(fields) - set(AGENT_CONFIG_DEFAULT)
    if unknown:
        raise TypeError(f"AgentConfig has no field {sorted(unknown)}")
    return {**AGENT_CONFIG_DEFAULT, **fields}


def spawned_event(agent_id: uuid.UUID | str, **config: Any) -> dict[str, Any]:
    """The Spawned AgentEvent of ``agent_id``, its config :func:`runtime_config` with ``config`` changed."""
    return {"Spawned": {"agent_id": str(agent_id), "config": runtime_config(**config)}}


def runtime_envelope(payload: Any, *, correlation_id: str | None = None) -> dict[str, Any]:
    """``MessageEnvelope::new(payload)`` (``.with_correlation(id)`` with a correlation id) as serde
    writes it: the six keys in message/types.rs's order, now as a SystemTime, explicit nulls."""
    now = time.time_ns()
    return {
        "message_id": str(uuid.uuid4()),
        "timestamp": {"secs_since_epoch": now // 10**9, "nanos_since_epoch": now % 10**9},
        "source_agent": None,
        "target_agent": None,
        "correlation_id": correlation_id,
        "payload": payload,
    }


def runtime_bytes(payload: Any, *, correlation_id: str | None = None) -> bytes:
    """:func:`runtime_envelope` as serde_json::to_vec writes it: compact, no spaces."""
    envelope = runtime_envelope(payload, correlation_id=correlation_id)
    return json.dumps(envelope, separators=(",", ":")).encode()


# Timestamps in both contract forms, including the edges of what Python and PostgreSQL hold.
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | st.timezones()
)


@st.composite
def rfc3339(draw: Any) -> tuple[str, datetime]:
    """(text, instant): an RFC 3339 string in one of the forms a runtime may write."""
    moment = draw(moments)
    if draw(st.booleans()):
        moment = moment.astimezone(UTC)
    text = moment.isoformat()
    if text.endswith("+00:00") and draw(st.booleans()):
        text = text[: -len("+00:00")] + "Z"
    # In UTC: an ambiguous local time compares between zones by a rule of its own (PEP 495).
    return text, moment.astimezone(UTC)


@st.composite
def system_time(draw: Any) -> tuple[dict, datetime]:
    """(value, instant) of Rust's SystemTime as serde writes it."""
    seconds = draw(st.integers(min_value=0, max_value=2**33))
    nanos = draw(st.integers(min_value=0, max_value=999_999_999))
    return {"secs_since_epoch": seconds, "nanos_since_epoch": nanos}, datetime.fromtimestamp(
        seconds + nanos / 1e9, tz=UTC
    )


timestamps = rfc3339() | system_time()
bad_timestamps = st.one_of(
    json_values,
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
            "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
            "yesterday",
            {"secs_since_epoch": 10**20},
            {"secs_since_epoch": -(10**20)},
            {"secs_since_epoch": 1, "nanos_since_epoch": 10**400},
            {"secs_since_epoch": True},
            {"secs_since_epoch": 1.5},
        ]
    ),
)


@st.composite
def enveloped(draw: Any, payload: Any) -> tuple[Any, dict[str, Any]]:
    """(message, what the envelope says): the payload bare, or in the envelope with either timestamp form."""
    if draw(st.booleans()):
        return payload, {"message_id": None, "timestamp": None}
    text_or_none = st.none() | st.text(max_size=40)
    stamp, instant = draw(timestamps)
    message_id = draw(st.uuids().map(str) | st.text(min_size=1, max_size=300))
    message = {
        "message_id": message_id,
        "timestamp": stamp,
        "source_agent": draw(text_or_none),
        "target_agent": draw(text_or_none),
        "correlation_id": draw(text_or_none),
        "payload": payload,
    }
    for optional in ("source_agent", "target_agent", "correlation_id"):
        if message[optional] is None and draw(st.booleans()):
            del message[optional]
    return message, {"message_id": message_id, "timestamp": instant}


states = st.sampled_from(AgentState.values)
# AgentConfig as serde writes it: every field present, Option::None as an explicit null.
runtime_configs = st.fixed_dictionaries(
    {
        "model": st.just("claude-3-5-sonnet-20241022") | st.text(min_size=1, max_size=40).filter(str.strip),
        "max_turns": st.none() | st.integers(min_value=1, max_value=1000),
        "allowed_tools": st.none() | st.lists(st.text(min_size=1, max_size=20), max_size=4),
        "enable_mcp": st.booleans(),
        "timeout_seconds": st.integers(min_value=1, max_value=3600),
        "memory_limit_mb": st.none() | st.just(512) | st.integers(min_value=1, max_value=65536),
    }
)
configs = runtime_configs | st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(min_size=1, max_size=40).filter(str.strip),
        "max_turns": st.none() | st.integers(min_value=1, max_value=1000),
        "allowed_tools": st.none() | st.lists(st.text(max_size=20), max_size=4),
        "enable_mcp": st.booleans(),
        "timeout_seconds": st.integers(min_value=1, max_value=3600),
        "memory_limit_mb": st.none() | st.integers(min_value=1, max_value=65536),
        "name": st.text(min_size=1, max_size=40).filter(str.strip),
    },
)
hostile_configs = st.dictionaries(
    st.sampled_from(["model", "max_turns", "allowed_tools", "enable_mcp", "timeout_seconds", "memory_limit_mb", "name"])
    | nasty_text,
    json_values,
    max_size=7,
)


@st.composite
def agent_event_body(draw: Any, kind: str, agent_id: str) -> dict[str, Any]:
    """The body of a valid agent event of ``kind``."""
    body: dict[str, Any] = {"agent_id": agent_id}
    if kind == "Spawned":
        body["config"] = draw(configs)
    elif kind == "StateChanged":
        body["old_state"], body["new_state"] = draw(states), draw(states)
    elif kind == "Terminated":
        body["reason"] = draw(st.sampled_from(["graceful_stop", "forced_stop"]))
    elif kind == "Error":
        body["error"] = draw(agent_text)
    elif kind == "Output":
        body["content"] = draw(agent_text)
    elif kind == "Heartbeat":
        body["timestamp"] = draw(timestamps)[0]
    return body


@st.composite
def valid_agent_events(draw: Any, agent_id: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(message, facts): a valid agent event and what a parser must read from it."""
    agent = agent_id or str(draw(st.uuids()))
    kind = draw(st.sampled_from(AGENT_VARIANTS))
    body = draw(agent_event_body(kind, agent))
    message, facts = draw(enveloped({kind: body}))
    return message, {**facts, "kind": kind, "agent_id": agent, "body": body}


@st.composite
def valid_discoveries(draw: Any) -> tuple[Any, dict[str, Any]]:
    stamp, instant = draw(timestamps)
    body = {
        "agent_id": draw(st.text(min_size=1, max_size=40)),
        "agent_role": draw(st.text(min_size=1, max_size=40)),
        "discovery_type": draw(st.sampled_from([*DiscoveryType.values, *(t.lower() for t in DiscoveryType.values)])),
        "content": draw(discovery_text),
        "confidence": draw(st.floats(min_value=0, max_value=1) | st.sampled_from([0, 1])),
        "timestamp": stamp,
    }
    if draw(st.booleans()):  # the runtime always writes it (null for None); older publishers leave it out
        body["related_to"] = draw(st.none() | st.text(max_size=40) | discovery_text)
    message, facts = draw(enveloped(body))
    return message, {**facts, "body": body, "instant": instant}


@st.composite
def valid_restart_answers(draw: Any, restart_id: str | None = None) -> tuple[Any, dict[str, Any]]:
    body: dict[str, Any] = {"restart_id": restart_id or str(draw(st.uuids())), "success": draw(st.booleans())}
    if draw(st.booleans()):
        body["node_id"] = str(draw(st.uuids()))
    if draw(st.booleans()):
        body["error_message"] = draw(st.none() | nasty_text)
    if draw(st.booleans()):
        body["new_instance_id"] = draw(st.none() | st.uuids().map(str))
    message, facts = draw(enveloped({"RestartCompleted": body}))
    return message, {**facts, "body": body}


@st.composite
def valid_system_messages(draw: Any) -> tuple[Any, dict[str, Any]]:
    """(message, facts): a SystemMessage on system.control: the unit variants as bare strings, the
    requests with their reply_to; enveloped or bare."""
    name = draw(st.sampled_from(["Startup", "Shutdown", "PoolStatus", "SystemHealth"]))
    payload: Any = name if name in ("Startup", "Shutdown") else {name: {"reply_to": draw(st.text(max_size=40))}}
    message, facts = draw(enveloped(payload))
    return message, {**facts, "name": name, "payload": payload}


@st.composite
def runtime_command_replies(draw: Any, agent_id: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(reply, facts): a CommandResponse as handler.rs writes it, in MessageEnvelope::new with the
    correlation id: Success {message, data} (data per command, or null) or Error {error, code: null}."""
    agent = agent_id or str(draw(st.uuids()))
    request_id = str(draw(st.uuids()))
    kind = draw(st.sampled_from(["Pause", "Resume", "Stop", "HealthCheck", "Status", "Input", "Error", "Empty"]))
    data: Any = {
        "Pause": {"agent_id": agent, "state": "paused"},
        "Resume": {"agent_id": agent, "state": "running"},
        "Stop": {"agent_id": agent, "state": "stopped"},
        "HealthCheck": {"agent_id": agent, "healthy": draw(st.booleans())},
        "Input": {"agent_id": agent, "status": "input_sent"},
        "Empty": None,
    }.get(kind)
    if kind == "Status":
        uptime = {"secs": draw(st.integers(0, 10**9)), "nanos": draw(st.integers(0, 999_999_999))}
        data = {"id": agent, "state": draw(states), "uptime": uptime, "config": draw(runtime_configs)}
    if kind == "Error":
        payload = {"Error": {"error": draw(nasty_text | long_text), "code": None}}
    else:
        payload = {"Success": {"message": "Command executed successfully", "data": data}}
    stamp, _ = draw(system_time())
    reply = {
        "message_id": str(draw(st.uuids())),
        "timestamp": stamp,
        "source_agent": None,
        "target_agent": None,
        "correlation_id": request_id,
        "payload": payload,
    }
    return reply, {"request_id": request_id, "agent_id": agent, "kind": kind, "payload": payload}


@st.composite
def mutated(draw: Any, valid: st.SearchStrategy) -> Any:
    """A valid message with one field of its body (or the variant name) replaced by anything."""
    message, facts = draw(valid)
    payload = json.loads(json.dumps(message["payload"] if facts["message_id"] is not None else message))
    if not isinstance(payload, dict):  # a unit variant ("Startup"): replaced whole
        return draw(json_values | nasty_text)
    target = payload
    if len(payload) == 1 and isinstance(next(iter(payload.values())), dict):  # tagged: the body inside
        _, target = next(iter(payload.items()))
        if draw(st.integers(0, 4)) == 0:
            return {draw(nasty_text | st.sampled_from(["Teleported", "spawned", "RestartNode", ""])): target}
    key = draw(st.sampled_from(sorted(target)) | nasty_text)
    target[key] = draw(json_values | bad_timestamps)
    return payload


def hostile_bytes_examples(max_size: int) -> list[bytes]:
    """Fixed hostile payloads, each of at most ``max_size`` bytes (a stream's max message size)."""
    huge = max_size - 64
    examples = [
        b"",
        b"\xff\xfe\xfd",
        b'{"a": "\xc3\x28"}',  # invalid UTF-8 inside a JSON string
        b'"\xed\xa0\x80"',  # an encoded surrogate (CESU-8): invalid UTF-8
        "\ufeff{}".encode(),  # a UTF-8 BOM
        json.dumps({"StateChanged": {}}).encode("utf-16"),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"1" * 5000,  # longer than Python's integer digit limit
        b"-" + b"9" * 4000,
        b"NaN",
        b'{"confidence": Infinity}',
        b"[1e999]",
        b'"\\u0000"',
        b'{"\\u0000": "\\ud800"}',
        b"null",
        b"true",
        b"[]",
        b"{}",
        b'{"payload": 1, "message_id": 2}',
        b'{"payload": {}, "message_id": "m", "timestamp": "0001-01-01T00:00:00+01:00"}',
        b'"' + b"x" * huge + b'"',
        b'{"Output": {"agent_id": "' + b"a" * huge + b'"}}',
        b"\x00" * 64,
        b"<script>window.__pwned=1</script>",
    ]
    return [example for example in examples if len(example) <= max_size]


def random_bytes(rng: random.Random, max_size: int) -> bytes:
    """Random bytes, sometimes with the look of JSON, of a random length up to max_size."""
    size = min(max_size, int(rng.expovariate(1 / 200)) + 1)
    choice = rng.random()
    if choice < 0.5:
        return rng.randbytes(size)
    alphabet = b'{}[]":,0123456789.-+eEtruefalsn \\u\x00\xff'
    return bytes(rng.choice(alphabet) for _ in range(size))


def hostile_value(rng: random.Random, agent_id: str) -> Any:
    """A hostile but well-formed JSON value aimed at the parsers' fields."""
    nasty = rng.choice(
        [
            None,
            True,
            -1,
            2**63,
            10**30,
            1e308,
            "",
            "\x00",
            "\ud800",
            "<script>window.__pwned=1</script>",
            "x" * 5000,
            [],
            {},
            [[[[[]]]]],
        ]
    )
    kind = rng.choice([*AGENT_VARIANTS, "Teleported", "RestartCompleted", "RestartNode", "SystemHealth"])
    body = {
        "agent_id": rng.choice([agent_id, str(uuid.uuid4()), "not-a-uuid", nasty]),
        "restart_id": rng.choice([str(uuid.uuid4()), nasty]),
        "config": rng.choice([{"max_turns": 10**12, "name": "\x00", "allowed_tools": [1, None]}, nasty]),
        "old_state": rng.choice([*AgentState.values, nasty]),
        "new_state": rng.choice([*AgentState.values, nasty]),
        "content": nasty,
        "error": nasty,
        "success": nasty,
        "error_message": "\x00 boom",
        "timestamp": rng.choice(["0001-01-01T00:00:00+01:00", {"secs_since_epoch": 10**19}, nasty]),
    }
    if rng.random() < 0.3:  # a discovery's shape
        return {
            "agent_id": rng.choice([agent_id, nasty]),
            "agent_role": rng.choice(["r", nasty]),
            "discovery_type": rng.choice(["Insight", "rumour", nasty]),
            "content": rng.choice(["\x00", "<script>window.__pwned=1</script>", nasty]),
            "confidence": rng.choice([0.5, -0.1, 2, nasty]),
            "timestamp": rng.choice([datetime.now(UTC).isoformat(), "9999-12-31T23:59:59-01:00", nasty]),
        }
    value = {kind: rng.choice([body, nasty])}
    if rng.random() < 0.5:
        moment = rng.choice(
            [
                (datetime.now(UTC) - timedelta(seconds=rng.randrange(10**6))).isoformat(),
                {"secs_since_epoch": rng.randrange(2**34), "nanos_since_epoch": rng.randrange(10**9)},
                nasty,
            ]
        )
        value = {"message_id": rng.choice([uuid.uuid4().hex, nasty]), "timestamp": moment, "payload": value}
    return value
