"""rebuild_projections: the projection rebuilt from the streams equals the live one, twice over.

The streams are shared (fixed names), so every test uses agents of its own (uuid4) and compares
only their rows. The live projection is made by a real bridge (BridgeThread) on real NATS and
PostgreSQL; the rebuild then reads the same streams.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connections

from agents.models import Agent, AgentAnomaly, Discovery, InteractiveSession, SessionMessage
from mistersmith.jetstream import client as nats
from mistersmith.jetstream.messages import envelope
from mistersmith.live.bridge import BridgeThread
from mistersmith.live.models import BridgePosition, DeadLetter
from mistersmith.operations.rebuild import RebuildRefused, rebuild_projections
from tests.conftest import delete_bridge_consumers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def publish(subject: str, payload: dict | bytes) -> int:
    """Publish one message as the runtime does (enveloped); return its stream sequence."""
    data = payload if isinstance(payload, bytes) else json.dumps(envelope(payload, message_id=uuid.uuid4().hex))
    data = data if isinstance(data, bytes) else data.encode()
    return nats.connection().publish(subject, data, msg_id=uuid.uuid4().hex).seq


def event(agent: uuid.UUID, kind: str, **body) -> tuple[str, dict]:
    return f"agent.{agent}.events", {kind: {"agent_id": str(agent), **body}}


def moved(agent: uuid.UUID, old: str, new: str) -> tuple[str, dict]:
    return event(agent, "StateChanged", old_state=old, new_state=new)


def beat(agent: uuid.UUID, second: int) -> tuple[str, dict]:
    return event(agent, "Heartbeat", timestamp=at(second))


def spawned(agent: uuid.UUID, name: str, **config) -> tuple[str, dict]:
    return event(agent, "Spawned", config={"name": name, "model": "claude-test", **config})


def discovery(agent: uuid.UUID, kind: str, content: str, confidence: float) -> tuple[str, dict]:
    body = {
        "agent_id": str(agent),
        "agent_role": "researcher",
        "discovery_type": kind,
        "content": content,
        "confidence": confidence,
        "timestamp": at(100),
    }
    return f"discoveries.{agent}.{kind.lower()}s", body


def projection(ids: list[uuid.UUID]) -> dict:
    """Everything the projections hold about these agents (apply times left out: they differ by design)."""
    agents = list(
        Agent.objects.filter(pk__in=ids)
        .order_by("pk")
        .values(
            "id",
            "name",
            "status",
            "model",
            "max_turns",
            "enable_mcp",
            "timeout_seconds",
            "memory_limit_mb",
            "last_heartbeat",
        )
    )
    anomalies = sorted(
        AgentAnomaly.objects.filter(agent_id__in=ids).values_list(
            "agent_id", "event_kind", "current_state", "attempted_state", "detail", "stream_sequence"
        ),
        key=lambda row: row[-1],
    )
    messages = list(
        SessionMessage.objects.filter(session__agent_id__in=ids)
        .order_by("session_id", "position")
        .values_list("session_id", "position", "role", "content", "timestamp", "stream_sequence")
    )
    found = sorted(
        Discovery.objects.filter(agent_id__in=[str(i) for i in ids]).values_list(
            "agent_id", "agent_role", "discovery_type", "content", "confidence", "timestamp", "stream_sequence"
        ),
        key=lambda row: row[-1],
    )
    return {"agents": agents, "anomalies": anomalies, "messages": messages, "discoveries": found}


def wipe(ids: list[uuid.UUID], delete_agents: list[uuid.UUID]) -> None:
    """Lose the projections of these agents: some rows gone, the rest wrong."""
    Agent.objects.filter(pk__in=delete_agents).delete()
    Agent.objects.filter(pk__in=ids).update(status="Paused", last_heartbeat=None)
    AgentAnomaly.objects.filter(agent_id__in=ids).delete()
    SessionMessage.objects.filter(session__agent_id__in=ids, stream_sequence__isnull=False).delete()
    Discovery.objects.filter(agent_id__in=[str(i) for i in ids]).delete()


@pytest.fixture
def bridge(nats_url):
    prefix = f"test-rebuild-{uuid.uuid4().hex[:10]}"
    thread = BridgeThread(consumer_prefix=prefix, url=nats_url)
    thread.start()
    assert thread.ready.wait(20)
    thread.prefix = prefix
    yield thread
    thread.stop()
    connections.close_all()
    delete_bridge_consumers(prefix)


def applied_up_to(prefix: str, sequence: int) -> bool:
    position = BridgePosition.objects.filter(consumer=f"{prefix}-agents").first()
    return position is not None and position.sequence >= sequence


def live_history(bridge) -> tuple[list[uuid.UUID], int]:
    """A realistic history for five new agents, applied by the live bridge; (agent ids, first sequence)."""
    talker, stopper, failer, rogue, stranger = (uuid.uuid4() for _ in range(5))
    tag = uuid.uuid4().hex[:6]
    first = publish(*spawned(talker, f"talker-{tag}", max_turns=7, timeout_seconds=60))
    wait_until(lambda: Agent.objects.filter(pk=talker).exists(), what="the talker spawned")
    old_session = InteractiveSession.objects.create(agent_id=talker, state="Terminated")
    SessionMessage.objects.create(session=old_session, position=0, role="user", content="hello", timestamp=T0)
    session = InteractiveSession.objects.create(agent_id=talker, state="Ready")
    SessionMessage.objects.create(session=session, position=0, role="user", content="count to three", timestamp=T0)
    # Spawned means Running (the runtime sends it after the spawn succeeded): no Created/Starting moves follow.
    history = [
        spawned(stopper, f"stopper-{tag}"),
        beat(talker, 1),
        moved(talker, "Running", "Processing"),
        event(talker, "Output", content="one"),
        event(talker, "Output", content="two"),
        beat(talker, 3),
        beat(talker, 2),  # late: never moves the heartbeat back
        discovery(talker, "Pattern", "the logs repeat every 60 s", 0.8),
        event(talker, "Output", content="three"),
        moved(talker, "Processing", "Idle"),
        beat(stopper, 4),
        spawned(failer, f"failer-{tag}"),
        event(failer, "Error", error="the CLI would not start"),
        event(stopper, "Output", content="nobody listens"),  # no open session: stream only
        moved(stopper, "Running", "Paused"),
        event(stopper, "Terminated", reason="graceful_stop"),
        discovery(stopper, "Question", "why does the pool shrink at night?", 0.4),
        spawned(rogue, f"rogue-{tag}"),
        event(rogue, "Terminated", reason="forced_stop"),
        moved(rogue, "Terminated", "Running"),  # forbidden: an anomaly
        moved(rogue, "Idle", "Processing"),  # wrong old state: an anomaly
        moved(stranger, "Running", "Idle"),  # an agent nobody spawned: an anomaly
        event(failer, "Terminated", reason="forced_stop"),
        discovery(failer, "Anomaly", "exit code 137", 0.95),
        (f"agent.{talker}.events", b"\xff not json"),  # dead-lettered by the live bridge
        beat(talker, 5),
        event(talker, "Output", content="done"),
    ]
    bridge.sequences = [publish(subject, payload) for subject, payload in history]
    ids = [talker, stopper, failer, rogue, stranger]
    wait_until(lambda: applied_up_to(bridge.prefix, max(bridge.sequences)), what="the bridge applied the history")
    wait_until(lambda: Discovery.objects.filter(agent_id__in=[str(i) for i in ids]).count() == 3, what="discoveries")
    return ids, first


def test_a_rebuild_from_scratch_equals_the_live_projection_and_is_idempotent(bridge):
    ids, _ = live_history(bridge)
    live = projection(ids)
    talker, stopper, failer, rogue, _ = ids
    statuses = {a["id"]: a["status"] for a in live["agents"]}
    assert statuses == {talker: "Idle", stopper: "Terminated", failer: "Terminated", rogue: "Terminated"}
    assert len(live["anomalies"]) == 3
    assert [m[3] for m in live["messages"] if m[5] is not None] == ["one", "two", "three", "done"]
    assert len(live["discoveries"]) == 3
    # The test's own: the bridge fixture also reads what other processes publish to the shared stream.
    own_dead_letters = DeadLetter.objects.filter(subject__in=[f"agent.{agent}.events" for agent in ids])
    dead_letters = own_dead_letters.count()

    wipe(ids, delete_agents=[stopper, rogue])
    assert projection(ids) != live
    first = rebuild_projections(from_scratch=True, agents=ids, consumer_prefix=bridge.prefix)
    assert projection(ids) == live
    assert first.feeds[0].rejected == {"not_json": 1}

    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(
        "rebuild_projections",
        "--from-scratch",
        *[arg for agent in ids for arg in ("--agent", str(agent))],
        "--consumer-prefix",
        bridge.prefix,
        stdout=stdout,
        stderr=stderr,
    )
    assert projection(ids) == live
    assert "agents:" in stderr.getvalue() and "of" in stderr.getvalue()  # progress
    assert "AGENT_EVENTS #" in stdout.getvalue()
    assert own_dead_letters.count() == dead_letters  # a rebuild never dead-letters twice


def test_a_rebuild_ahead_of_the_bridge_moves_its_position_so_nothing_is_skipped_or_repeated(bridge, nats_url):
    ids, first = live_history(bridge)
    talker = ids[0]
    bridge.stop()  # events arrive while no bridge runs: the rebuild applies them, not the bridge
    publish(*moved(talker, "Idle", "Processing"))
    end = publish(*event(talker, "Output", content="late"))
    wipe(ids, delete_agents=[])
    report = rebuild_projections(from_sequence=first, consumer_prefix=bridge.prefix)
    rebuilt = projection(ids)
    assert {a["id"]: a["status"] for a in rebuilt["agents"]}[talker] == "Processing"
    assert [m[3] for m in rebuilt["messages"] if m[5] is not None][-2:] == ["done", "late"]
    assert report.position == BridgePosition.objects.get(consumer=f"{bridge.prefix}-agents").sequence >= end
    rebuild_projections(from_sequence=first, consumer_prefix=bridge.prefix)
    assert projection(ids) == rebuilt

    # The live bridge starts after the rebuild's position: the next event once, nothing again.
    again = BridgeThread(consumer_prefix=bridge.prefix, url=nats_url)
    again.start()
    try:
        assert again.ready.wait(20)
        sequence = publish(*moved(talker, "Processing", "Idle"))
        wait_until(lambda: applied_up_to(bridge.prefix, sequence), what="the bridge applied the next event")
    finally:
        again.stop()
    after = projection(ids)
    assert {a["id"]: a["status"] for a in after["agents"]}[talker] == "Idle"
    assert after["anomalies"] == rebuilt["anomalies"] and after["messages"] == rebuilt["messages"]
    assert again.stats.processed["state_changed"] == 1 and not again.stats.processed["replay_skipped"]


def test_a_rebuild_from_the_middle_of_a_life_rewinds_each_agent_to_its_first_state_event(bridge):
    ids, _ = live_history(bridge)
    live = projection(ids)
    talker, stopper, failer, _, _ = ids
    start = bridge.sequences[12]  # the failer's Error: its first state event in the range
    rebuild_projections(from_sequence=start, consumer_prefix=bridge.prefix)
    assert projection(ids) == live  # nothing applied twice: no anomaly, no message repeated
    # Wrong states for agents whose first state event in the range is an Error and a StateChanged.
    Agent.objects.filter(pk__in=[failer, stopper]).update(status="Created")
    rebuild_projections(from_sequence=start, consumer_prefix=bridge.prefix)
    assert projection(ids) == live
    # The talker has no state event after the start: a rebuild from there leaves its state alone.
    Agent.objects.filter(pk=talker).update(status="Paused")
    rebuild_projections(from_sequence=start, consumer_prefix=bridge.prefix)
    assert Agent.objects.get(pk=talker).status == "Paused"


def test_a_start_past_the_bridge_is_refused_and_changes_nothing(bridge):
    ids, first = live_history(bridge)
    live = projection(ids)
    position = BridgePosition.objects.get(consumer=f"{bridge.prefix}-agents").sequence
    BridgePosition.objects.filter(consumer=f"{bridge.prefix}-agents").update(sequence=first - 1)
    with pytest.raises(RebuildRefused):
        rebuild_projections(from_sequence=first + 5, consumer_prefix=bridge.prefix, only=["agents"])
    assert projection(ids) == live
    BridgePosition.objects.filter(consumer=f"{bridge.prefix}-agents").update(sequence=position)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        rebuild_projections()
    with pytest.raises(ValueError):
        rebuild_projections(from_scratch=True, from_sequence=3)
    with pytest.raises(ValueError):
        rebuild_projections(from_scratch=True, only=["nodes"])


def test_a_rebuild_of_some_agents_never_makes_a_position_for_a_bridge_that_never_ran(nats_url):
    prefix = f"test-rebuild-none-{uuid.uuid4().hex[:8]}"
    report = rebuild_projections(from_scratch=True, agents=[uuid.uuid4()], consumer_prefix=prefix, only=["agents"])
    assert report.position is None and report.feeds[0].messages == 0
    assert not BridgePosition.objects.filter(consumer__startswith=prefix).exists()
