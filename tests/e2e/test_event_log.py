"""The event log in a real browser on the real ASGI server and bridge: live rows (escaped), the
filters, pause and resume, replay with "load more", and the subject matcher of subjects.js."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import expect

from mistersmith.jetstream import client as nats

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def publish(subject: str, payload: dict) -> int:
    return nats.connection().publish(subject, payload, msg_id=uuid.uuid4().hex).seq


def output(agent: uuid.UUID, text: str) -> dict:
    return {"Output": {"agent_id": str(agent), "content": text}}


def live_row(page, sequence: int, stream: str = "AGENT_EVENTS"):
    return page.locator(f"#live-rows tr[data-key='{stream}:{sequence}']")


def row_keys(page, agent: uuid.UUID | None = None) -> list[str]:
    """The live tail's row keys, newest first; with ``agent``, only the rows of that agent's subjects.
    The tail also shows what others put on the shared streams meanwhile (the bridge's own runtime
    health requests on system.control, whenever it starts and every probe interval), so a test that
    checks the order of its own events reads only those."""
    rows = "#live-rows tr" if agent is None else f"#live-rows tr[data-subject^='agent.{agent}.']"
    return page.locator(rows).evaluate_all("rows => rows.map(r => r.dataset.key)")


@pytest.fixture
def log_page(live_page):
    """The event log, live (snapshot loaded, subscribed), failing the test on any script error."""
    errors: list[str] = []
    live_page.on("pageerror", lambda error: errors.append(str(error)))
    live_page.goto(f"{live_page.server.url}/admin/events/")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    yield live_page
    assert errors == []


def test_a_published_message_appears_live_as_text(log_page):
    page = log_page
    agent = uuid.uuid4()
    subject = f"agent.{agent}.output"
    sequence = publish(subject, output(agent, XSS))

    row = live_row(page, sequence)
    expect(row).to_be_visible()
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("AGENT_EVENTS")
    expect(cells.nth(2)).to_have_text(str(sequence))
    expect(cells.nth(3)).to_have_text(subject)
    code = cells.nth(5).locator("code")
    assert json.loads(code.text_content()) == output(agent, XSS)  # the payload, character for character
    assert code.locator("*").count() == 0  # nothing in it became an element
    assert page.evaluate("window.__xss") is None

    later = publish(subject, output(agent, "second"))
    expect(live_row(page, later)).to_be_visible()
    assert row_keys(page, agent) == [f"AGENT_EVENTS:{later}", f"AGENT_EVENTS:{sequence}"]  # newest on top


def test_the_snapshot_fills_the_tail_and_the_live_tail_does_not_repeat_it(live_page):
    agent = uuid.uuid4()
    before = [publish(f"agent.{agent}.events", output(agent, f"before {i}")) for i in range(3)]
    live_page.goto(f"{live_page.server.url}/admin/events/")
    expect(live_page.locator("#live-badge")).to_have_attribute("data-state", "live")
    for sequence in before:
        expect(live_row(live_page, sequence)).to_have_count(1)
    after = publish(f"agent.{agent}.events", output(agent, "after"))
    expect(live_row(live_page, after)).to_have_count(1)
    keys = row_keys(live_page)
    assert len(keys) == len(set(keys))
    assert row_keys(live_page, agent) == [f"AGENT_EVENTS:{s}" for s in [after, *reversed(before)]]


def test_after_a_reconnect_what_was_missed_is_shown_once(log_page):
    page = log_page
    agent = uuid.uuid4()
    seen = publish(f"agent.{agent}.events", output(agent, "seen live"))
    expect(live_row(page, seen)).to_have_count(1)
    page.server.stop()
    expect(page.locator("#live-badge")).not_to_have_attribute("data-state", "live")
    missed = publish(f"agent.{agent}.events", output(agent, "while away"))
    page.server.start()
    page.wait_for_function("window.misterSmithLive.snapshots >= 2", timeout=30_000)
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
    expect(live_row(page, missed)).to_have_count(1)
    after = publish(f"agent.{agent}.events", output(agent, "after"))
    expect(live_row(page, after)).to_have_count(1)
    keys = row_keys(page)
    assert len(keys) == len(set(keys))
    assert row_keys(page, agent) == [f"AGENT_EVENTS:{s}" for s in (after, missed, seen)]


def test_subject_stream_and_text_filters_hide_and_show_rows(log_page):
    page = log_page
    first, second = uuid.uuid4(), uuid.uuid4()
    a = publish(f"agent.{first}.events", output(first, "Needle in the first"))
    b = publish(f"agent.{second}.output", output(second, "hay in the second"))
    row_a, row_b = live_row(page, a), live_row(page, b)
    expect(row_a).to_be_visible()
    expect(row_b).to_be_visible()

    subject = page.locator("#filter-subject")
    subject.fill(f"agent.{first}.*")
    expect(row_a).to_be_visible()
    expect(row_b).to_be_hidden()
    subject.fill("agent.*.output")
    expect(row_a).to_be_hidden()
    expect(row_b).to_be_visible()

    subject.fill("agent.>.output")  # not a pattern: said so, and not applied
    expect(subject).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#filter-subject-error")).to_contain_text("may only be the last token")
    expect(row_a).to_be_visible()
    expect(row_b).to_be_visible()

    subject.fill(f"agent.{second}.>")
    expect(subject).to_have_attribute("aria-invalid", "false")
    expect(row_a).to_be_hidden()
    arriving_a = publish(f"agent.{first}.events", output(first, "more needle"))
    arriving_b = publish(f"agent.{second}.output", output(second, "more hay"))
    expect(live_row(page, arriving_b)).to_be_visible()
    expect(live_row(page, arriving_a)).to_have_count(1)  # arrived, and kept for when the filter changes
    expect(live_row(page, arriving_a)).to_be_hidden()

    subject.fill(f"agent.{first}.events")
    page.locator("#filter-text").fill("NEEDLE IN")  # case-insensitive, on the excerpt
    expect(row_a).to_be_visible()
    expect(live_row(page, arriving_a)).to_be_hidden()
    expect(page.locator("#live-count")).to_contain_text("Showing 1 of")

    page.locator("#filter-stream").select_option("SUPERVISION_EVENTS")
    expect(row_a).to_be_hidden()
    expect(page.locator("#live-empty")).to_have_text("No event matches the filters.")

    page.locator("#filter-stream").select_option("")
    page.locator("#filter-text").fill("")
    subject.fill("")
    for row in (row_a, row_b, live_row(page, arriving_a), live_row(page, arriving_b)):
        expect(row).to_be_visible()


def test_pause_counts_arrivals_and_resume_shows_them(log_page):
    page = log_page
    agent = uuid.uuid4()
    page.locator("#filter-subject").fill(f"agent.{agent}.>")  # count only this test's events
    button = page.locator("#pause-button")
    button.click()
    expect(button).to_have_text("Resume")
    expect(button).to_have_attribute("aria-pressed", "true")
    pending = page.locator("#pending-count")
    expect(pending).to_have_text("Paused: 0 new events")

    sequences = [publish(f"agent.{agent}.events", output(agent, f"while paused {i}")) for i in range(3)]
    expect(pending).to_have_text("Paused: 3 new events")
    for sequence in sequences:
        expect(live_row(page, sequence)).to_have_count(0)  # counted, not shown

    button.click()
    expect(button).to_have_text("Pause")
    expect(pending).to_be_hidden()
    assert row_keys(page, agent) == [f"AGENT_EVENTS:{s}" for s in reversed(sequences)]


def test_the_tail_keeps_at_most_500_rows(log_page):
    page = log_page
    agent = uuid.uuid4()
    sequences = [publish(f"agent.{agent}.status", {"n": i}) for i in range(520)]
    expect(live_row(page, sequences[-1])).to_have_count(1)
    rows = page.locator("#live-rows tr")
    expect(rows).to_have_count(500)
    expect(rows.first).to_have_attribute("data-key", f"AGENT_EVENTS:{sequences[-1]}")
    expect(rows.last).to_have_attribute("data-key", f"AGENT_EVENTS:{sequences[20]}")  # the oldest went first


def test_replay_from_a_sequence_lists_the_messages_and_loads_more(log_page):
    page = log_page
    agent = uuid.uuid4()
    subject = f"agent.{agent}.events"
    sequences = [publish(subject, output(agent, f"replayed {i}")) for i in range(5)]
    publish(f"agent.{uuid.uuid4()}.events", output(agent, "another agent"))

    page.locator("#replay-stream").select_option("AGENT_EVENTS")
    page.locator("#replay-subject").fill(subject)
    page.locator("#replay-sequence").fill(str(sequences[1]))
    page.locator("#replay-limit").fill("2")
    page.locator("#replay-submit").click()

    rows = page.locator("#replay-rows tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("td:nth-child(3)")).to_have_text([str(s) for s in sequences[1:3]])
    expect(page.locator("#replay-status")).to_have_text("2 events from AGENT_EVENTS.")
    expect(rows.first.locator("code")).to_contain_text("replayed 1")

    page.locator("#replay-more").click()
    expect(rows).to_have_count(4)
    expect(rows.locator("td:nth-child(3)")).to_have_text([str(s) for s in sequences[1:5]])
    page.locator("#replay-more").click()
    expect(page.locator("#replay-status")).to_have_text(
        "4 events from AGENT_EVENTS. That is all the stream holds for now."
    )

    page.locator("#replay-time").fill("2025-01-01T00:00:00")  # with a sequence too: refused, with the reason
    page.locator("#replay-submit").click()
    expect(page.locator("#replay-error")).to_have_text("Give a start sequence or a start time, not both.")


def test_the_subject_matcher_module(log_page):
    results = log_page.evaluate(
        """async () => {
            const { subjectMatches, parsePattern, BadPattern } = await import("/static/mistersmith/subjects.js");
            const refused = (pattern) => {
                try { parsePattern(pattern); return null; } catch (e) { return e instanceof BadPattern ? e.message : "other"; }
            };
            return {
                matches: [
                    subjectMatches("agent.*.events", "agent.42.events"),
                    subjectMatches("supervision.>", "supervision.agent.1.health.heartbeat"),
                    subjectMatches(">", "a"),
                    subjectMatches("system.control", "system.control"),
                ],
                misses: [
                    subjectMatches("agent.*.events", "agent.42.output"),
                    subjectMatches("agent.*.events", "agent.42.events.more"),
                    subjectMatches("agent.*.events", "agent.events"),
                    subjectMatches("supervision.>", "supervision"),
                    subjectMatches("system.control", "system.controls"),
                ],
                refused: ["", "a..b", "a.", "a.>.b", "agent*", "a b", "a.".repeat(200)].map(refused),
            };
        }"""
    )
    assert results["matches"] == [True] * 4
    assert results["misses"] == [False] * 5
    assert [message is not None and message != "other" for message in results["refused"]] == [True] * 7
    assert "may only be the last token" in results["refused"][3]
    assert "whole token" in results["refused"][4]


def test_an_event_framed_again_after_a_bridge_takeover_is_applied_once(log_page):
    """A new leading bridge frames again what the dead one may not have sent (mistersmith/live/bridge.py):
    a page's connection (live.js) applies each (stream, sequence) of a topic once, however often it
    comes, in order or behind newer ones; events of another topic or without a sequence pass."""
    applied = log_page.evaluate(
        """() => {
            const live = window.misterSmithLive;
            const applied = [];
            live.applyEvents = (topic, events) => applied.push([topic, events.map((e) => e.sequence ?? null)]);
            const event = (sequence) => ({ stream: "AGENT_EVENTS", sequence });
            live.deliver({ topic: "agents", events: [event(1), event(2)] });
            live.deliver({ topic: "agents", events: [event(1), event(2), event(3)] });  // repeated after a takeover
            live.deliver({ topic: "agents", events: [event(2)] });
            live.deliver({ topic: "agents", events: [event(0)] });  // redelivered behind newer: still new
            live.deliver({ topic: "agent.x", events: [event(1)] });  // another topic keeps its own
            live.deliver({ topic: "agents", events: [{ kind: "no sequence" }] });
            return applied;
        }"""
    )
    assert applied == [
        ["agents", [1, 2]],
        ["agents", [3]],
        ["agents", [0]],
        ["agent.x", [1]],
        ["agents", [None]],
    ]
