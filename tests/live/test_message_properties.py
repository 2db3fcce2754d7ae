"""Property tests of every message parser and of the frame builder (issue 6, "Bad input").

For any input, valid or hostile: only InvalidMessage (the declared rejection, with a reason the
bridge counts by) escapes a parser; a valid message parses and its key fields round-trip; what a
parser returns can be stored (no NUL, no lone surrogate, numbers the columns hold) and sent to a
browser (strict JSON). The database-backed half is in test_bridge_properties.py.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from agents.commands import parse_command_response
from agents.discoveries import DiscoveryFilter, parse_discovery
from agents.events import INT_MAX, parse_agent_event, subject_agent_id
from agents.models import DiscoveryType
from mistersmith.console.dashboard.runtime import health_report
from mistersmith.jetstream.messages import (
    MAX_DEPTH,
    InvalidMessage,
    decode_json,
    open_envelope,
    parse_timestamp,
    tagged_variant,
    uuid_field,
)
from mistersmith.live.frames import FrameBuffer, group_name, socket_text
from supervision.events import control_variant, parse_restart_completed
from tests.live import payloads
from tests.live.payloads import (
    KNOWN_REASONS,
    bad_timestamps,
    dumps,
    json_values,
    mutated,
    nasty_text,
    runtime_command_replies,
    timestamps,
    valid_agent_events,
    valid_discoveries,
    valid_restart_answers,
    valid_system_messages,
)

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")  # channels' own rule, and shorter than 100

hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(payloads.hostile_bytes_examples(256 * 1024)),
    json_values.map(dumps),
    json_values.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)
# A decoded message can be any JSON value, hostile ones included.
any_message = json_values | bad_timestamps | mutated(valid_agent_events()) | mutated(valid_discoveries())


def rejected_or(function, *args, **kwargs) -> Any:
    """Call a parser: its result, or None when it refused with InvalidMessage and a known reason."""
    try:
        return function(*args, **kwargs)
    except InvalidMessage as error:
        assert error.reason in KNOWN_REASONS, error.reason
        assert str(error)
        return None


def strict_json(text: str) -> Any:
    """JSON.parse as a browser does it: NaN and infinities are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a frame")

    return json.loads(text, parse_constant=refuse)


def storable(value: Any) -> bool:
    """Text PostgreSQL and UTF-8 accept, numbers JSON allows, at any depth."""
    if isinstance(value, str):
        return not UNSTORABLE.search(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(storable(key) and storable(child) for key, child in value.items())
    if isinstance(value, list):
        return all(storable(child) for child in value)
    return True


def cleaned(value: Any) -> Any:
    """What decode_json makes of a value: NUL and lone surrogates as U+FFFD."""
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {cleaned(key): cleaned(child) for key, child in value.items()}
    if isinstance(value, list):
        return [cleaned(child) for child in value]
    return value


# --- decode_json, the envelope, timestamps ---------------------------------------------------


@given(hostile_bytes)
def test_decode_json_refuses_with_invalid_message_only_and_returns_storable_values(data):
    value = rejected_or(decode_json, data)
    if value is not None:
        assert storable(value)
        strict_json(json.dumps(value))
        json.dumps(value).encode("utf-8")


@given(json_values)
def test_decode_json_round_trips_every_json_value(value):
    assert decode_json(dumps(value)) == cleaned(value)
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")  # invalid UTF-8 with a surrogate
    assert rejected_or(decode_json, raw) in (None, cleaned(value))


def same_as_the_json_module(data: bytes) -> None:
    """decode_json reads bytes with orjson when it can; text always goes through the json module.
    Both ways must give the same value, or the same refusal."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        expected = ("value", decode_json(text))
    except InvalidMessage as error:
        expected = ("refused", error.reason)
    try:
        got = ("value", decode_json(data))
    except InvalidMessage as error:
        got = ("refused", error.reason)
    assert got == expected
    if got[0] == "value":  # equal and of the same types (1 == 1.0, but a float is not the integer sent)
        assert json.dumps(got[1]) == json.dumps(expected[1])


@given(hostile_bytes)
def test_decode_json_reads_bytes_as_the_json_module_reads_any_text(data):
    same_as_the_json_module(data)


@given(json_values)
def test_decode_json_reads_every_json_value_as_the_json_module_does(value):
    same_as_the_json_module(dumps(value))


@pytest.mark.parametrize(
    "data",
    [
        b"[12345678901234567890123, -9223372036854775809, 18446744073709551616]",  # beyond 64 bits
        b'{"n": 1234567890123456789, "f": 0.1000000000000000055511151231257827}',
        b'{"a": 1, "a": 2}',
        b"[1e-400, -0, -0.0, 1E+2]",
        b'"\\ud800 \\u0000"',
    ],
)
def test_decode_json_keeps_what_the_json_module_keeps(data):
    same_as_the_json_module(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"1" * 5000, "not_json"),  # Python's integer digit limit raises ValueError, not JSONDecodeError
        (b"NaN", "not_json"),
        (b"[Infinity]", "not_json"),
        (b"[-Infinity]", "not_json"),
        (b'{"confidence": 1e999}', "not_json"),
        (b'"\xed\xa0\x80"', "not_json"),  # an encoded surrogate is invalid UTF-8
        (json.dumps({"A": 1}).encode("utf-16"), "not_json"),  # JSON is UTF-8
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "too_deep"),
    ],
)
def test_decode_json_refuses_what_serde_json_never_writes(data, reason):
    with pytest.raises(InvalidMessage) as error:
        decode_json(data)
    assert error.value.reason == reason


def test_decode_json_makes_nul_and_lone_surrogates_storable():
    assert decode_json(b'{"a\\u0000": ["\\ud800", "\\\\u0000", "\\ud83d\\ude00"]}') == {
        "a\ufffd": ["\ufffd", "\\u0000", "\U0001f600"]
    }


@given(any_message)
def test_open_envelope_and_tagged_variant_refuse_with_invalid_message_only(message):
    wrapped = rejected_or(open_envelope, message)
    if wrapped is not None:
        rejected_or(tagged_variant, wrapped.payload)
        rejected_or(control_variant, message)


@given(json_values, st.data())
def test_the_envelope_round_trips(payload, data):
    assume(not (isinstance(payload, dict) and "payload" in payload and "message_id" in payload))
    message, facts = data.draw(payloads.enveloped(payload))
    wrapped = open_envelope(decode_json(dumps(message)))
    assert wrapped.message_id == (cleaned(facts["message_id"]) if facts["message_id"] else None)
    assert wrapped.timestamp == facts["timestamp"]
    assert wrapped.payload == cleaned(payload)


@given(timestamps)
def test_both_timestamp_forms_round_trip_as_utc(stamp):
    value, instant = stamp
    parsed = parse_timestamp(json.loads(json.dumps(value)))
    assert parsed == instant
    assert parsed.tzinfo is UTC


@given(bad_timestamps | st.text(max_size=40))
def test_any_timestamp_parses_as_a_utc_instant_python_holds_or_is_refused(value):
    parsed = rejected_or(parse_timestamp, value)
    if parsed is not None:
        assert parsed.tzinfo is UTC
        assert datetime(1, 1, 1, tzinfo=UTC) <= parsed  # astimezone(UTC) worked: the database layer can too


@given(st.dictionaries(st.sampled_from(["id", "other"]), json_values), st.booleans())
def test_uuid_field_refuses_with_invalid_message_only(body, required):
    found = rejected_or(uuid_field, body, "id", required=required)
    assert found is None or isinstance(found, uuid.UUID)


# --- agent events ------------------------------------------------------------------------------


@given(hostile_bytes, st.none() | st.uuids().map(str) | st.text(max_size=40))
def test_agent_events_from_any_bytes_refuse_with_invalid_message_only(data, subject_agent):
    message = rejected_or(decode_json, data)
    if message is not None:
        check_agent_event(rejected_or(parse_agent_event, message, subject_agent=subject_agent))


@given(any_message | mutated(valid_agent_events()))
def test_agent_events_from_any_value_refuse_with_invalid_message_only(message):
    check_agent_event(rejected_or(parse_agent_event, message))


def check_agent_event(event: Any) -> None:
    """What the projection writes from an event fits its columns."""
    if event is None:
        return
    assert event.kind in payloads.AGENT_VARIANTS
    assert event.text is None or storable(event.text)
    for key in ("max_turns", "timeout_seconds", "memory_limit_mb"):
        if key in event.config and not (event.config[key] is None and key != "timeout_seconds"):  # null: no limit
            assert 1 <= event.config[key] <= INT_MAX and not isinstance(event.config[key], bool)
    for key in ("name", "model"):
        if key in event.config:
            assert isinstance(event.config[key], str) and storable(event.config[key])
    if event.config.get("allowed_tools") is not None:
        assert all(isinstance(tool, str) and storable(tool) for tool in event.config["allowed_tools"])
    if event.occurred_at is not None:
        assert event.occurred_at.tzinfo is UTC


@given(valid_agent_events())
def test_valid_agent_events_parse_and_round_trip(example):
    message, facts = example
    body = facts["body"]
    subject = f"agent.{facts['agent_id']}.events"
    event = parse_agent_event(decode_json(dumps(message)), subject_agent=subject_agent_id(subject))
    note(repr(event))
    assert (event.kind, str(event.agent_id)) == (facts["kind"], facts["agent_id"])
    assert event.message_id == (cleaned(facts["message_id"]) if facts["message_id"] else None)
    if facts["kind"] == "StateChanged":
        assert (event.old_state, event.new_state) == (body["old_state"], body["new_state"])
    elif facts["kind"] == "Terminated":
        assert event.reason == body["reason"]
    elif facts["kind"] in ("Error", "Output"):
        assert event.text == cleaned(body["error" if facts["kind"] == "Error" else "content"])
    elif facts["kind"] == "Heartbeat":
        assert event.occurred_at == parse_timestamp(body["timestamp"])
    elif facts["kind"] == "Spawned":
        # explicit nulls stay (Option::None: no limit, every tool), a missing key stays missing
        assert event.config == cleaned(body["config"])
        assert event.new_state == "Running"  # sent only after the spawn succeeded
    if facts["kind"] != "Heartbeat":
        assert event.occurred_at == facts["timestamp"]


def test_spawned_config_keeps_only_what_the_agents_table_holds():
    agent = str(uuid.uuid4())
    config = {
        "max_turns": 10**12,
        "timeout_seconds": 0,
        "memory_limit_mb": True,
        "enable_mcp": "yes",
        "allowed_tools": ["ok", 1],
        "name": "a\x00b",
        "model": "   ",
        "extra": [1, 2],
    }
    event = parse_agent_event({"Spawned": {"agent_id": agent, "config": config}})
    assert event.config == {"name": "a\ufffdb", "extra": [1, 2]}


@given(st.text(max_size=120))
def test_subject_agent_id_never_raises(subject):
    found = subject_agent_id(subject)
    assert found is None or (isinstance(found, str) and subject == f"agent.{found}.{subject.rsplit('.', 1)[-1]}")


# --- discoveries -------------------------------------------------------------------------------


@given(hostile_bytes)
def test_discoveries_from_any_bytes_refuse_with_invalid_message_only(data):
    message = rejected_or(decode_json, data)
    if message is not None:
        check_discovery(rejected_or(parse_discovery, message, sequence=1))


@given(any_message | mutated(valid_discoveries()))
def test_discoveries_from_any_value_refuse_with_invalid_message_only(message):
    check_discovery(rejected_or(parse_discovery, message, sequence=1))


def check_discovery(discovery: Any) -> None:
    """The row fits its table: lengths, choices, no NUL, a finite confidence from 0 to 1."""
    if discovery is None:
        return
    for name in ("message_id", "agent_id", "agent_role", "discovery_type", "content", "related_to"):
        value = getattr(discovery, name)
        if value is not None:
            assert storable(value)
            field = discovery._meta.get_field(name)
            assert field.max_length is None or len(value) <= field.max_length, name
    assert discovery.discovery_type in DiscoveryType.values
    assert 0 <= discovery.confidence <= 1
    assert discovery.timestamp.tzinfo is UTC
    strict_json(socket_text({"topic": "discoveries", "events": [discovery.as_contract()]}))


@given(valid_discoveries())
def test_valid_discoveries_parse_and_round_trip(example):
    message, facts = example
    body = facts["body"]
    found = parse_discovery(decode_json(dumps(message)), sequence=7)
    assert found.agent_id == cleaned(body["agent_id"])[:100]
    assert found.agent_role == cleaned(body["agent_role"])[:100]
    assert found.discovery_type.lower() == body["discovery_type"].lower()
    assert found.content == cleaned(body["content"])  # whole: the stream's 64 KiB is the only bound
    assert found.confidence == body["confidence"]
    assert found.timestamp == facts["instant"]
    assert found.related_to == (cleaned(body["related_to"]) if body.get("related_to") else None)
    assert found.stream_sequence == 7
    if facts["message_id"]:
        assert found.message_id == cleaned(facts["message_id"])[:200]


filter_params = st.dictionaries(
    st.sampled_from(["types", "agent_roles", "min_confidence", "keywords", "subscriber", "other"]),
    nasty_text
    | st.lists(st.sampled_from([*DiscoveryType.values, "pattern", "rumour", " ", ""]), max_size=4).map(",".join)
    | st.sampled_from(["nan", "inf", "-0", "1e999", "0.5", "\uff11", "0x1", "1_0", ",".join(["k"] * 60), "x" * 300]),
)


@given(filter_params)
def test_discovery_filter_from_any_query_refuses_with_value_error_only(params):
    try:
        found = DiscoveryFilter.from_query(params)
    except ValueError as error:
        assert str(error)
        return
    assert set(found.types) <= set(DiscoveryType.values)
    assert found.min_confidence is None or 0 <= found.min_confidence <= 1
    for text in [*found.agent_roles, *found.keywords, found.subscriber or ""]:
        assert "\x00" not in text


@given(
    st.lists(st.sampled_from(DiscoveryType.values), max_size=3),
    st.lists(st.text(st.characters(exclude_characters=",\x00"), min_size=1, max_size=10), max_size=3),
    st.none() | st.floats(min_value=0, max_value=1),
    st.lists(st.text(st.characters(exclude_characters=",\x00"), min_size=1, max_size=10), max_size=3),
)
def test_valid_discovery_filters_round_trip(types, roles, minimum, keywords):
    roles = [role.strip() for role in roles if role.strip()]
    keywords = [keyword.strip() for keyword in keywords if keyword.strip()]
    params = {"types": ",".join(types), "agent_roles": ",".join(roles), "keywords": ",".join(keywords)}
    if minimum is not None:
        params["min_confidence"] = repr(minimum)
    found = DiscoveryFilter.from_query(params)
    assert (found.types, found.agent_roles, found.min_confidence, found.keywords) == (types, roles, minimum, keywords)


@given(
    filter_params, st.dictionaries(st.sampled_from(["content", "confidence", "agent_id", "agent_role"]), json_values)
)
def test_a_discovery_filter_matches_any_frame_event_without_raising(params, event):
    try:
        found = DiscoveryFilter.from_query(params)
    except ValueError:
        return
    assert found.matches(event) in (True, False)


# --- system.control: the restart protocol, command replies, health ------------------------------


@given(hostile_bytes)
def test_control_messages_from_any_bytes_refuse_with_invalid_message_only(data):
    message = rejected_or(decode_json, data)
    if message is None:
        return
    variant = rejected_or(control_variant, message)
    if variant is not None:
        answer = rejected_or(parse_restart_completed, variant[1])
        assert answer is None or answer.error_message is None or storable(answer.error_message)
    report = rejected_or(health_report, message)
    assert report is None or isinstance(report, dict)


@given(any_message | mutated(valid_restart_answers()))
def test_restart_answers_from_any_value_refuse_with_invalid_message_only(message):
    variant = rejected_or(control_variant, message)
    if variant is not None:
        rejected_or(parse_restart_completed, variant[1])


@given(valid_system_messages())
def test_system_messages_parse_unit_variants_included(example):
    message, facts = example
    name, body = control_variant(decode_json(dumps(message)))
    assert name == facts["name"]
    if name in ("Startup", "Shutdown"):
        assert body is None
    else:
        assert body == cleaned(facts["payload"][name])


@pytest.mark.parametrize("text", ["Startup ", "startup", "Teleported", ""])
def test_other_bare_strings_on_system_control_are_refused(text):
    with pytest.raises(InvalidMessage):
        control_variant({"message_id": str(uuid.uuid4()), "timestamp": None, "payload": text})


@given(valid_restart_answers())
def test_valid_restart_answers_parse_and_round_trip(example):
    message, facts = example
    body = facts["body"]
    name, inner = control_variant(decode_json(dumps(message)))
    answer = parse_restart_completed(inner)
    assert name == "RestartCompleted"
    assert (str(answer.restart_id), answer.success) == (body["restart_id"], body["success"])
    assert (str(answer.node_id) if answer.node_id else None) == body.get("node_id")
    assert answer.error_message == (cleaned(body["error_message"])[:5000] if body.get("error_message") else None)
    assert (str(answer.new_instance_id) if answer.new_instance_id else None) == body.get("new_instance_id")


@given(hostile_bytes, st.none() | st.uuids())
def test_command_replies_from_any_bytes_refuse_with_invalid_message_only(data, message_id):
    response = rejected_or(parse_command_response, data, message_id=message_id)
    assert response is None or response.variant in ("Success", "Error", "Status", "HealthCheck")


@given(
    st.sampled_from(
        [
            {"Success": {"message": "done"}},
            {"Error": {"error": "no", "code": 3}},
            {"Status": {"state": "Running"}},
            {"HealthCheck": {"healthy": True, "details": "ok"}},
        ]
    ),
    st.data(),
)
def test_valid_command_replies_parse(reply, data):
    message, _ = data.draw(payloads.enveloped(reply))
    (variant,) = reply
    assert parse_command_response(dumps(message)).variant == variant


@given(runtime_command_replies())
def test_the_runtimes_command_replies_parse_as_it_writes_them(example):
    reply, facts = example
    response = parse_command_response(dumps(reply), message_id=facts["request_id"])
    assert response.correlation_id == facts["request_id"]
    ((variant, body),) = facts["payload"].items()
    assert response.variant == variant and response.success == (variant == "Success")
    if variant == "Success":
        assert response.data == body["data"]
    else:
        assert (response.message, response.code) == (cleaned(body["error"]), None)


# --- the frame builder -------------------------------------------------------------------------

topics = st.sampled_from(["agents", "supervision", "discoveries", "events", "system"]) | st.uuids().map(
    lambda agent: f"agent.{agent}"
)


@given(st.text(max_size=120))
def test_group_name_refuses_with_value_error_only_and_makes_valid_group_names(topic):
    try:
        name = group_name(topic)
    except ValueError:
        return
    assert GROUP_NAME.fullmatch(name) and len(name) < 100


@given(topics)
def test_every_topic_the_bridge_uses_is_a_group(topic):
    assert GROUP_NAME.fullmatch(group_name(topic))


@given(
    st.lists(
        st.tuples(topics, hostile_bytes, st.none() | st.integers(min_value=1, max_value=2**63)),
        max_size=20,
    )
)
def test_frames_hold_every_event_in_order_as_strict_json(items):
    """Events built from anything a publisher sent (as the bridge builds them: decoded bodies)
    become one frame per topic whose socket text any browser can parse, events in order."""
    buffer = FrameBuffer()
    added: dict[str, list] = {}
    highest: dict[str, int] = {}
    for topic, data, sequence in items:
        body = rejected_or(decode_json, data)
        event = {"kind": "supervision_event", "subject": "supervision.x", "body": body}
        buffer.add(topic, event, sequence, "SUPERVISION_EVENTS")
        added.setdefault(topic, []).append(event)
        if sequence is not None:
            highest[topic] = max(sequence, highest.get(topic, 0))
    assert len(buffer) == len(items)
    frames = buffer.take()
    assert len(buffer) == 0 and buffer.take() == []
    assert {frame["topic"] for frame in frames} == set(added)
    for frame in frames:
        sent = strict_json(socket_text(frame))
        assert sent["topic"] == frame["topic"]
        assert sent["sequence"] == highest.get(frame["topic"])
        assert [event["body"] for event in sent["events"]] == [event["body"] for event in added[frame["topic"]]]
        group_name(frame["topic"])


# --- what the console sends: the runtime's envelope ---------------------------------------------


def test_everything_the_console_sends_is_the_runtimes_envelope():
    """envelope() writes MessageEnvelope as serde does: every key, in order, nulls when unset, a
    SystemTime; the restart command and agent commands go through it."""
    from agents.commands import command_envelope
    from supervision.events import restart_node_command

    agent, request = uuid.uuid4(), uuid.uuid4()
    sent = [
        command_envelope(request, agent, {"Pause": {"agent_id": str(agent)}}),
        restart_node_command(
            restart_id=uuid.uuid4(),
            node_id=uuid.uuid4(),
            node_name="n",
            attempt=1,
            delay_ms=0,
            requested_by="a",
            reason="r",
        ),
    ]
    keys = ["message_id", "timestamp", "source_agent", "target_agent", "correlation_id", "payload"]
    for message in sent:
        assert list(message) == keys
        assert set(message["timestamp"]) == {"secs_since_epoch", "nanos_since_epoch"}
        assert 0 <= message["timestamp"]["nanos_since_epoch"] < 10**9
        assert message["source_agent"] is None
        wrapped = open_envelope(decode_json(dumps(message)))
        assert abs((wrapped.timestamp - datetime.now(UTC)).total_seconds()) < 60
    assert sent[0]["target_agent"] == str(agent) and sent[0]["correlation_id"] is None
    assert sent[1]["target_agent"] is None and sent[1]["correlation_id"] == sent[1]["message_id"]
