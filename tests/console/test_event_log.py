"""The event log's page and JSON endpoints through real NATS: who may see them, replay by sequence,
by time and by subject, every bad input refused with its reason, the snapshot's shape."""

from __future__ import annotations

import datetime as dt
import json
import socket
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from mistersmith.jetstream import client as nats
from mistersmith.jetstream import subjects
from mistersmith.jetstream.reader import stream_names

pytestmark = pytest.mark.django_db

PAGE = "event_log:page"
REPLAY = "event_log:replay"
SNAPSHOT = "event_log:snapshot"


def publish(subject: str, payload: dict) -> int:
    """Publish through JetStream; the stream sequence it got."""
    return nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


def output(agent: uuid.UUID, text: str) -> dict:
    return {"Output": {"agent_id": str(agent), "content": text}}


@pytest.fixture
def make_user(django_user_model):
    def make(*, staff: bool = True, superuser: bool = False, perm: bool = False):
        name = f"u{uuid.uuid4().hex[:8]}"  # no password (hashing one is slow): the tests force_login
        if superuser:
            return django_user_model.objects.create_superuser(name, f"{name}@example.com", None)
        user = django_user_model.objects.create_user(name, is_staff=staff)
        if perm:
            user.user_permissions.add(Permission.objects.get(codename="view_event_log"))
        return user

    return make


@pytest.fixture
def viewer(client, make_user):
    """A client logged in as staff with only the event log's permission."""
    client.force_login(make_user(perm=True))
    return client


def replay(client, **params) -> tuple[int, dict]:
    response = client.get(reverse(REPLAY), params)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


# --- Access -------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page_and_gets_401_from_the_json(client):
    response = client.get(reverse(PAGE))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "next=/admin/events/" in response["Location"]
    for name in (SNAPSHOT, REPLAY):
        response = client.get(reverse(name), {"stream": "AGENT_EVENTS"})
        assert response.status_code == 401
        assert response.json() == {"error": "Log in first."}


@pytest.mark.parametrize(
    ("kind", "allowed"),
    [
        ({"staff": True}, False),  # staff without the permission
        ({"staff": False, "perm": True}, False),  # the permission but not staff
        ({"staff": True, "perm": True}, True),
        ({"superuser": True}, True),
    ],
    ids=["staff-without-perm", "perm-without-staff", "staff-with-perm", "superuser"],
)
def test_permission_matrix(client, make_user, kind, allowed):
    client.force_login(make_user(**kind))
    page = client.get(reverse(PAGE))
    snapshot = client.get(reverse(SNAPSHOT))
    replayed = client.get(reverse(REPLAY), {"stream": "SYSTEM_EVENTS", "limit": "1"})
    if allowed:
        assert page.status_code == 200
        assert b'id="live-table"' in page.content and b'id="replay-form"' in page.content
        assert b"UTC" in page.content  # the replay's times are said to be UTC
        assert snapshot.status_code == 200 and replayed.status_code == 200
    else:
        assert page.status_code == 403
        # The one wording of mistersmith.web.access: what is missing, staff or the permission.
        reason = (
            "You may not do this: it needs the permission mistersmith.view_event_log."
            if kind.get("staff")
            else "Log in as staff first."
        )
        assert (snapshot.status_code, snapshot.json()) == (403, {"error": reason})
        assert replayed.status_code == 403


def test_the_endpoints_only_read(viewer):
    assert viewer.post(reverse(PAGE)).status_code == 405
    assert viewer.post(reverse(REPLAY), {"stream": "AGENT_EVENTS"}).status_code == 405


def test_page_hands_its_script_the_endpoints_and_the_streams(viewer):
    response = viewer.get(reverse(PAGE))
    config = json.loads(response.content.split(b'id="event-log-config" type="application/json">')[1].split(b"<")[0])
    assert config == {
        "snapshotUrl": reverse(SNAPSHOT),
        "replayUrl": reverse(REPLAY),
        "messageUrl": reverse("event_log:message"),
        "streams": stream_names(),
        "maxRows": 500,
        "agentLinks": None,  # may not view agents: their ids stay text (tests/agents/test_links.py)
    }
    assert b"mistersmith/event_log.js" in response.content


# --- Replay -------------------------------------------------------------------------------------


def test_replay_from_a_sequence_pages_with_next_sequence(viewer):
    agent = uuid.uuid4()
    subject = f"agent.{agent}.events"
    sequences = [publish(subject, output(agent, f"line {i}")) for i in range(5)]

    status, body = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_sequence=sequences[1], limit=2)
    assert status == 200
    assert body["stream"] == "AGENT_EVENTS"
    assert [e["sequence"] for e in body["events"]] == sequences[1:3]
    first = body["events"][0]
    assert first["subject"] == subject and first["stream"] == "AGENT_EVENTS"
    assert json.loads(first["excerpt"]) == output(agent, "line 1")
    assert first["size"] == len(first["excerpt"].encode())
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None
    assert body["has_more"] is True

    status, more = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_sequence=body["next_sequence"])
    assert status == 200
    assert [e["sequence"] for e in more["events"]] == sequences[3:]
    assert more["next_sequence"] == sequences[-1] + 1 and more["has_more"] is False

    status, empty = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_sequence=more["next_sequence"])
    assert (status, empty["events"], empty["next_sequence"]) == (200, [], more["next_sequence"])


def test_replay_without_a_start_reads_from_the_oldest_retained(viewer):
    agent = uuid.uuid4()
    subject = f"agent.{agent}.status"
    sequences = [publish(subject, {"agent_id": str(agent), "n": i}) for i in range(3)]
    status, body = replay(viewer, stream="AGENT_EVENTS", subject=subject)
    assert status == 200
    assert [e["sequence"] for e in body["events"]] == sequences


def test_replay_from_a_time_given_without_an_offset_reads_it_as_utc(viewer):
    agent = uuid.uuid4()
    subject = f"agent.{agent}.events"
    before = [publish(subject, output(agent, "before")) for _ in range(2)]
    _, body = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_sequence=before[-1])
    last_before = dt.datetime.fromisoformat(body["events"][0]["time"])
    after = [publish(subject, output(agent, "after")) for _ in range(3)]

    cut = last_before + dt.timedelta(microseconds=1)
    naive_utc = cut.astimezone(dt.UTC).replace(tzinfo=None).isoformat()  # what a datetime-local field sends
    status, body = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_time=naive_utc)
    assert status == 200
    assert [e["sequence"] for e in body["events"]] == after

    in_paris = cut.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()  # an explicit offset is honoured
    _, same = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_time=in_paris)
    assert [e["sequence"] for e in same["events"]] == after

    _, everything = replay(viewer, stream="AGENT_EVENTS", subject=subject, start_time="2000-01-01T00:00")
    assert [e["sequence"] for e in everything["events"]] == before + after


def test_replay_filters_by_subject_pattern(viewer):
    agent = uuid.uuid4()
    events = publish(f"agent.{agent}.events", output(agent, "an event"))
    said = publish(f"agent.{agent}.output", output(agent, "some output"))
    other = uuid.uuid4()
    elsewhere = publish(f"agent.{other}.output", output(other, "other output"))

    _, mine = replay(viewer, stream="AGENT_EVENTS", subject=f"agent.{agent}.*", start_sequence=events)
    assert [e["sequence"] for e in mine["events"]] == [events, said]

    _, outputs = replay(viewer, stream="AGENT_EVENTS", subject="agent.*.output", start_sequence=events)
    assert [e["sequence"] for e in outputs["events"]] == [said, elsewhere]

    _, everything = replay(viewer, stream="AGENT_EVENTS", subject=">", start_sequence=events)
    assert [e["sequence"] for e in everything["events"]] == [events, said, elsewhere]


def test_replay_reads_the_console_owned_streams_too(viewer):
    component = uuid.uuid4().hex
    sequence = publish(f"supervision.error.low.{component}", {"component": component})
    status, body = replay(viewer, stream="SUPERVISION_EVENTS", subject="supervision.error.>", start_sequence=sequence)
    assert status == 200
    assert [(e["sequence"], e["subject"]) for e in body["events"]] == [(sequence, f"supervision.error.low.{component}")]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Choose a stream"),
        ({"stream": "NOPE"}, "Unknown stream 'NOPE'"),
        ({"stream": "agent_events"}, "Unknown stream"),
        ({"start_sequence": "3", "start_time": "2025-01-01T00:00"}, "not both"),
        ({"start_sequence": "0"}, "start sequence must be a whole number from 1"),
        ({"start_sequence": "-4"}, "start sequence must be a whole number from 1"),
        ({"start_sequence": "1.5"}, "start sequence must be a whole number from 1"),
        ({"start_sequence": "ten"}, "start sequence must be a whole number from 1"),
        ({"start_sequence": "٣"}, "start sequence must be a whole number from 1"),  # a digit, but not 0-9
        ({"start_sequence": str(2**64)}, "start sequence must be a whole number from 1"),
        ({"start_time": "yesterday"}, "is not a time like"),
        ({"start_time": "2025-13-01T00:00"}, "is not a time like"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "1001"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "lots"}, "limit must be a whole number from 1 to 1000"),
        ({"subject": "agent..events"}, "empty token"),
        ({"subject": "agent.*.events."}, "empty token"),
        ({"subject": "agent.>.events"}, "may only be the last token"),
        ({"subject": "agent*"}, "a wildcard must be a whole token"),
        ({"subject": "agent.a b.events"}, "no spaces"),
        ({"subject": "a." * 200}, "longer than 255"),
        ({"subject": "supervision.>"}, "matches nothing in AGENT_EVENTS"),
        ({"subject": "agent.*"}, "matches nothing in AGENT_EVENTS"),
    ],
)
def test_bad_replay_input_is_refused_with_the_reason(viewer, params, message):
    params = {"stream": "AGENT_EVENTS", **params} if "stream" not in params and params else params
    status, body = replay(viewer, **params)
    assert status == 400
    assert message in body["error"]


@pytest.fixture
def nats_away():
    """The process's NATS connection pointed at a port where nothing listens (a real refusal)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    previous = nats._connection
    nats._connection = nats.SyncNats(f"nats://127.0.0.1:{port}")
    try:
        yield
    finally:
        nats._connection.close()
        nats._connection = previous


def test_nats_away_is_503_with_the_reason(viewer, nats_away):
    for name, params in ((REPLAY, {"stream": "AGENT_EVENTS"}), (SNAPSHOT, {})):
        response = viewer.get(reverse(name), params)
        assert response.status_code == 503
        assert response.json()["error"].startswith("The streams cannot be read now: NATS at nats://127.0.0.1:")


# --- Snapshot -----------------------------------------------------------------------------------


def test_snapshot_has_the_newest_events_and_the_positions_they_reach(viewer):
    agent = uuid.uuid4()
    sequences = [publish(f"agent.{agent}.events", output(agent, f"n{i}")) for i in range(3)]
    supervision = publish(f"supervision.error.high.{agent.hex}", {"n": 1})

    response = viewer.get(reverse(SNAPSHOT))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"events", "positions"}
    assert set(body["positions"]) == set(stream_names())
    assert body["positions"]["AGENT_EVENTS"] == sequences[-1]
    assert body["positions"]["SUPERVISION_EVENTS"] == supervision
    events = body["events"]
    assert 4 <= len(events) <= 50
    assert [(e["stream"], e["sequence"]) for e in events[:4]] == [
        ("SUPERVISION_EVENTS", supervision),
        *[("AGENT_EVENTS", s) for s in reversed(sequences)],
    ]
    times = [dt.datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times, reverse=True)
    assert set(events[0]) == {"stream", "sequence", "subject", "time", "size", "excerpt", "summary"}
    for stream, position in body["positions"].items():
        assert all(e["sequence"] <= position for e in events if e["stream"] == stream)


def test_snapshot_keeps_only_the_newest_fifty(viewer):
    agent = uuid.uuid4()
    sequences = [publish(f"agent.{agent}.status", {"n": i}) for i in range(55)]
    events = viewer.get(reverse(SNAPSHOT)).json()["events"]
    assert len(events) == 50
    assert [e["sequence"] for e in events] == list(reversed(sequences))[:50]


# --- The subject matcher (the replay's check; subjects.js has the same rules) --------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("agent.*.events", "agent.42.events", True),
        ("agent.*.events", "agent.42.output", False),
        ("agent.*.events", "agent.42.events.x", False),
        ("agent.*.events", "agent.events", False),
        ("supervision.>", "supervision.agent.1.health.heartbeat", True),
        ("supervision.>", "supervision", False),
        (">", "anything.at.all", True),
        ("system.control", "system.control", True),
        ("system.control", "system.health", False),
    ],
)
def test_subject_matches(pattern, subject, expected):
    assert subjects.matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("agent.*.events", "agent.*.events", True),
        ("agent.x.*", "agent.*.events", True),
        ("agent.>", "agent.*.output", True),
        ("agent.*", "agent.*.events", False),
        ("agent.x.events.>", "agent.*.events", False),
        ("supervision.>", "agent.*.events", False),
        (">", "discoveries.>", True),
    ],
)
def test_subject_patterns_overlap(first, second, expected):
    assert subjects.overlaps(first, second) is expected
    assert subjects.overlaps(second, first) is expected


# --- Readable lines and replays from the future (issue 11) -------------------------------------

ALLOCATION = {
    "event_type": "Rejected",
    "task_id": "task-{n}",
    "timestamp": "2026-01-31T13:45:00.123456Z",
    "allocation_details": {
        "requested_capabilities": ["rust", "review"],
        "assigned_agent": None,
        "rejection_reasons": ["no capacity", "missing capability review"],
        "alternative_agents": ["agent-7"],
        "priority": "High",
        "estimated_duration_ms": 120000,
    },
    "coordination_metadata": {
        "workflow_id": "wf-1",
        "parent_task_id": None,
        "dependencies": [],
        "coordination_strategy": "Hierarchical",
    },
}


def allocation(n: str, event: str, **details) -> dict:
    body = json.loads(json.dumps(ALLOCATION).replace("{n}", n))
    body["event_type"] = event
    body["allocation_details"].update(details)
    return body


def test_task_allocation_events_have_a_readable_line_in_the_replay(viewer):
    n = uuid.uuid4().hex[:8]
    first = publish("supervision.tasks.allocation.rejected", allocation(n, "Rejected"))
    publish(
        "supervision.tasks.allocation.assigned",
        allocation(n, "Assigned", assigned_agent="agent-9", rejection_reasons=[]),
    )
    publish("supervision.tasks.allocation.requested", allocation(n, "Requested", rejection_reasons=[]))
    status, body = replay(
        viewer, stream="SUPERVISION_EVENTS", subject="supervision.tasks.allocation.*", start_sequence=str(first)
    )
    assert status == 200
    lines = [event["summary"] for event in body["events"][:3]]
    assert lines == [
        f"Task task-{n} rejected: no capacity, missing capability review; alternatives agent-7 (priority High)",
        f"Task task-{n} assigned to agent-9 (priority High)",
        f"Task task-{n} requested needing rust, review (priority High)",
    ]


def test_other_supervision_and_control_messages_have_lines_too(viewer):
    agent = uuid.uuid4()
    first = publish(
        f"supervision.agent.{agent}.lifecycle.paused",
        {
            "agent_id": str(agent),
            "event_type": "Paused",
            "timestamp": "2026-01-31T13:45:00Z",
            "previous_state": "Running",
            "new_state": "Paused",
            "metadata": {"trigger": "operator"},
        },
    )
    publish("supervision.error.high.db", {"message": "disk full"})
    _, body = replay(viewer, stream="SUPERVISION_EVENTS", start_sequence=str(first), limit="2")
    assert [event["summary"] for event in body["events"]] == [
        f"Agent {agent} paused: Running → Paused",
        "High error in db: disk full",
    ]
    sequence = publish("system.control", "Startup")
    _, body = replay(viewer, stream="SYSTEM_EVENTS", start_sequence=str(sequence), limit="1")
    assert body["events"][0]["summary"] == "Runtime startup"


def test_a_replay_from_a_future_time_returns_no_event_and_says_so(viewer):
    publish(f"agent.{uuid.uuid4()}.events", output(uuid.uuid4(), "the newest"))
    for future in ("2099-01-01T00:00", "2300-01-01T00:00", "9999-12-31T23:59"):  # past 2262 NATS reads "from the start"
        status, body = replay(viewer, stream="AGENT_EVENTS", start_time=future)
        assert status == 200, body
        assert body["events"] == [] and body["has_more"] is False
        assert body["note"].startswith(f"No event in AGENT_EVENTS at or after {future[:4]}")
        assert "its newest is from " in body["note"]
