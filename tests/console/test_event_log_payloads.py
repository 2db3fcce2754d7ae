"""A row of the event log opens its whole message as pretty JSON (issue 14, item 6): the message
endpoint through real NATS, who may read it, and every bad input refused with its reason."""

from __future__ import annotations

import json
import uuid

import pytest
from django.urls import reverse

from mistersmith.jetstream import client as nats
from tests.console import test_event_log as event_log_tests
from tests.console.test_event_log import output, publish

# The event log tests' fixtures, shared: users with and without its permission, NATS away.
make_user, viewer, nats_away = event_log_tests.make_user, event_log_tests.viewer, event_log_tests.nats_away

pytestmark = pytest.mark.django_db

MESSAGE = "event_log:message"


def read(client, **params) -> tuple[int, dict]:
    response = client.get(reverse(MESSAGE), params)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_a_message_comes_whole_and_pretty(viewer):
    agent = uuid.uuid4()
    text = "<b>ünïcode</b> " + "x" * 70_000  # past the replay's 64 KiB and the excerpt's 500 characters
    sequence = publish(f"agent.{agent}.events", output(agent, text))
    status, body = read(viewer, stream="AGENT_EVENTS", sequence=str(sequence))
    assert status == 200
    assert (body["stream"], body["sequence"], body["subject"]) == ("AGENT_EVENTS", sequence, f"agent.{agent}.events")
    assert body["json"] is True
    assert json.loads(body["text"]) == output(agent, text)  # the whole payload, character for character
    assert body["text"].startswith('{\n  "Output": {\n    "agent_id": ')  # indented, in the message's order
    assert "ünïcode" in body["text"]  # as it is, not as \u escapes
    assert body["size"] > 70_000 and body["time"]


def test_a_payload_that_is_not_json_is_shown_as_text_with_the_reason(viewer):
    subject = f"agent.{uuid.uuid4()}.output"
    sequence = nats.connection().publish(subject, b"not json \xff at all", msg_id=uuid.uuid4().hex).seq
    status, body = read(viewer, stream="AGENT_EVENTS", sequence=str(sequence))
    assert status == 200
    assert body["json"] is False
    assert body["text"] == "not json \ufffd at all"
    assert body["error"].startswith("not_json")


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"stream": "AGENT_EVENTS", "sequence": "0"}, 400, "The sequence must be a whole number from 1."),
        ({"stream": "AGENT_EVENTS", "sequence": "x"}, 400, "The sequence must be a whole number from 1."),
        ({"stream": "AGENT_EVENTS", "sequence": "9" * 30}, 400, "The sequence must be a whole number from 1."),
        ({"stream": "NOPE", "sequence": "1"}, 400, "Unknown stream 'NOPE'"),
        ({"stream": "AGENT_EVENTS", "sequence": str(2**62)}, 404, "AGENT_EVENTS no longer holds message"),
    ],
)
def test_bad_input_is_refused_with_the_reason(viewer, params, status, message):
    answered, body = read(viewer, **params)
    assert answered == status
    assert body["error"].startswith(message)


def test_only_readers_of_the_event_log_may_read_a_message(client, make_user):
    params = {"stream": "AGENT_EVENTS", "sequence": "1"}
    assert client.get(reverse(MESSAGE), params).status_code == 401
    client.force_login(make_user(staff=True))
    response = client.get(reverse(MESSAGE), params)
    assert response.status_code == 403
    assert "mistersmith.view_event_log" in response.json()["error"]
    assert client.post(reverse(MESSAGE), params).status_code in (403, 405)


def test_nats_away_is_503(viewer, nats_away):
    status, body = read(viewer, stream="AGENT_EVENTS", sequence="1")
    assert status == 503
    assert body["error"].startswith("The streams cannot be read now")


def test_the_page_offers_the_heartbeat_toggle_and_the_message_endpoint(viewer):
    page = viewer.get(reverse("event_log:page")).content.decode()
    assert 'id="filter-heartbeats"' in page
    assert json.dumps(reverse(MESSAGE)) in page
