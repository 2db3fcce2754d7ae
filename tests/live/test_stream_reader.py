"""Reading a stream's history through real JetStream: from a sequence, from a time, the newest of a subject."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from mistersmith.jetstream.client import connection
from mistersmith.jetstream.reader import KEEP_BYTES, read_latest, read_stream


def publish(subject: str, count: int, size: int = 0) -> list[int]:
    client = connection()
    return [client.publish(subject, {"n": n, "pad": "x" * size}, msg_id=uuid.uuid4().hex).seq for n in range(count)]


def test_the_newest_of_one_subject_are_found_behind_many_others():
    rare, busy = f"agent.{uuid.uuid4()}.events", f"agent.{uuid.uuid4()}.events"
    rare_sequences = publish(rare, 7)
    publish(busy, 300)
    found = read_latest("AGENT_EVENTS", subject=rare, count=3)
    assert [m.sequence for m in found] == rare_sequences[-3:]
    assert read_latest("AGENT_EVENTS", subject=f"agent.{uuid.uuid4()}.events", count=3) == []
    everything = read_latest("AGENT_EVENTS", count=5)
    assert len(everything) == 5 and everything[-1].subject == busy


def test_reads_from_a_sequence_and_from_a_time_with_big_payloads_cut():
    subject = f"agent.{uuid.uuid4()}.output"
    before = dt.datetime.now(dt.UTC)
    sequences = publish(subject, 4, size=KEEP_BYTES + 10)
    from_second = read_stream("AGENT_EVENTS", subject=subject, start_sequence=sequences[1], limit=10)
    assert [m.sequence for m in from_second] == sequences[1:]
    assert all(m.truncated and len(m.data) == KEEP_BYTES and m.size > KEEP_BYTES for m in from_second)
    from_time = read_stream("AGENT_EVENTS", subject=subject, start_time=before, limit=2)
    assert [m.sequence for m in from_time] == sequences[:2]
    assert from_time[0].as_event()["size"] > KEEP_BYTES


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"stream": "NOPE"}, "Unknown stream"),
        ({"stream": "AGENT_EVENTS", "limit": 0}, "limit"),
        ({"stream": "AGENT_EVENTS", "start_sequence": 0}, "start sequence"),
    ],
)
def test_bad_reads_are_refused_clearly(arguments, message):
    with pytest.raises(ValueError, match=message):
        read_stream(**arguments)


@pytest.mark.parametrize(
    ("first", "second", "both"),
    [
        ("agent.X.*", "agent.*.events", "agent.X.events"),
        ("agent.X.>", "agent.*.status", "agent.X.status"),
        (">", "agent.*.events", "agent.*.events"),
        ("agent.*.output", "agent.*.events", None),
        ("supervision.error.>", "supervision.>", "supervision.error.>"),
        ("a.>", "a", None),
        ("a", "a.>", None),
        ("a.*", "a.b.c", None),
    ],
)
def test_subject_intersections(first, second, both):
    from mistersmith.jetstream.subjects import intersection

    assert intersection(first, second) == both
    assert intersection(second, first) == both


def test_a_read_is_split_into_one_filter_per_stream_subject():
    from mistersmith.jetstream.reader import subject_filters

    assert subject_filters("AGENT_EVENTS", "agent.X.*") == ["agent.X.events", "agent.X.status", "agent.X.output"]
    assert subject_filters("AGENT_EVENTS", "agent.>") == [">"]
    assert subject_filters("AGENT_EVENTS", "discoveries.>") == []
    with pytest.raises(ValueError, match="wildcard"):
        subject_filters("AGENT_EVENTS", "agent*")
