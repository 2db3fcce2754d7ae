"""The runtime's message forms, and that nothing but InvalidMessage escapes a parser."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mistersmith.jetstream.messages import InvalidMessage, decode_json, open_envelope, parse_timestamp, tagged_variant
from supervision.events import control_variant, parse_restart_completed


def test_both_timestamp_forms_give_the_same_instant():
    rfc = parse_timestamp("2026-11-26T10:00:00.5Z")
    rust = parse_timestamp({"secs_since_epoch": 1795687200, "nanos_since_epoch": 500_000_000})
    assert rfc == rust == datetime(2026, 11, 26, 10, 0, 0, 500_000, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", {"secs_since_epoch": "1"}, {"secs_since_epoch": 10**20}, 12, None])
def test_bad_timestamps_are_refused(value):
    with pytest.raises(InvalidMessage) as error:
        parse_timestamp(value)
    assert error.value.reason == "bad_timestamp"


def test_envelope_or_bare():
    wrapped = open_envelope({"message_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "payload": {"A": {}}})
    assert (wrapped.message_id, wrapped.payload) == ("m1", {"A": {}})
    bare = open_envelope({"A": {}})
    assert (bare.message_id, bare.payload) == (None, {"A": {}})
    assert tagged_variant(bare.payload) == ("A", {})


def test_deep_json_is_refused_without_recursion():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidMessage) as error:
        decode_json(deep.encode())
    assert error.value.reason in {"too_deep", "not_json"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_message(data):
    with contextlib.suppress(InvalidMessage):
        parse_restart_completed(control_variant(decode_json(data))[1])


@given(json_values)
def test_random_json_only_ever_raises_invalid_message(value):
    with contextlib.suppress(InvalidMessage):
        parse_restart_completed(control_variant(decode_json(json.dumps(value).encode()))[1])


@given(
    st.dictionaries(
        st.sampled_from(["restart_id", "node_id", "success", "error_message", "new_instance_id"]), json_values
    )
)
def test_random_restart_answers_only_ever_raise_invalid_message(body):
    with contextlib.suppress(InvalidMessage):
        parse_restart_completed(body)


def test_a_nats_url_may_name_a_cluster():
    from mistersmith.jetstream.client import servers

    assert servers("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    assert servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
