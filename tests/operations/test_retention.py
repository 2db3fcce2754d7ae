"""manage.py prune: what is older than its retention goes, in batches; the rest stays."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from agents.models import AgentAnomaly, AgentCommandRecord, InteractiveSession, SessionMessage
from mistersmith.live.models import DeadLetter
from mistersmith.operations.retention import prune
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart

pytestmark = pytest.mark.django_db

RETENTION = {"failures": 90, "restarts": 90, "events": 30, "sessions": 30, "dead_letters": 30}
NOW = timezone.now()
OLD = NOW - timedelta(days=120)
RECENT = NOW - timedelta(days=1)


@pytest.fixture(autouse=True)
def retention():
    with override_settings(RETENTION_DAYS=RETENTION):
        yield


def failure(node: SupervisionNode, label: str, when) -> SupervisionFailure:
    return SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail=label, occurred_at=when)


def restart(node: SupervisionNode, when, failure: SupervisionFailure | None = None) -> SupervisionRestart:
    return SupervisionRestart.objects.create(
        node=node, failure=failure, restart_attempt_number=1, restart_delay_ms=100, started_at=when
    )


def aged(queryset, column: str, when) -> None:
    """Back-date rows whose time column is set on insert (auto_now_add)."""
    queryset.update(**{column: when})


def dead_letters(count: int, when) -> None:
    for n in range(count):
        DeadLetter.record(stream="AGENT_EVENTS", subject="agent.x.events", sequence=n, reason="r", error="e", data=b"")
    aged(DeadLetter.objects.filter(received_at__gt=NOW - timedelta(minutes=5)), "received_at", when)


@pytest.fixture
def installation() -> dict:
    """Some of each state type, old and recent; returns what must survive a prune."""
    node = SupervisionNode.objects.create(
        node_id=f"db-{uuid.uuid4().hex[:6]}", node_type="Service", node_type_detail="db"
    )
    old_failures = [failure(node, f"old {n}", OLD) for n in range(3)]
    old_but_restarted = failure(node, "old, its restart is recent", OLD)
    old_with_old_restart = failure(node, "old, its restart is old too", OLD)
    recent_failure = failure(node, "recent", RECENT)
    restart(node, OLD, old_with_old_restart)
    restart(node, OLD)
    kept_restart = restart(node, RECENT, old_but_restarted)

    agent_id = uuid.uuid4()
    for when in (OLD, RECENT):
        record = AgentCommandRecord.objects.create(agent_id=agent_id, command="Status", outcome="ok")
        anomaly = AgentAnomaly.objects.create(agent_id=agent_id, event_kind="StateChanged", detail="x")
        aged(AgentCommandRecord.objects.filter(pk=record.pk), "requested_at", when)
        aged(AgentAnomaly.objects.filter(pk=anomaly.pk), "recorded_at", when)

    def session(state: str, started, ended=None) -> InteractiveSession:
        made = InteractiveSession.objects.create(state=state, ended_at=ended)
        aged(InteractiveSession.objects.filter(pk=made.pk), "started_at", started)
        for position in range(3):
            SessionMessage.objects.create(session=made, position=position, role="user", content="hi", timestamp=started)
        return made

    old_closed = [session("Terminated", OLD, OLD + timedelta(hours=1)), session("Error", OLD)]
    kept_sessions = [
        session("Ready", OLD),  # still open
        session("Terminated", RECENT, RECENT),
        session("Terminated", OLD, RECENT),  # ran long; ended recently
    ]
    dead_letters(4, OLD)
    dead_letters(2, RECENT)
    return {
        "failures": {old_but_restarted.pk, recent_failure.pk},
        "gone failures": {f.pk for f in [*old_failures, old_with_old_restart]},
        "restarts": {kept_restart.pk},
        "sessions": {s.pk for s in kept_sessions},
        "gone sessions": {s.pk for s in old_closed},
    }


def state() -> dict:
    return {
        "failures": set(SupervisionFailure.objects.values_list("pk", flat=True)),
        "restarts": set(SupervisionRestart.objects.values_list("pk", flat=True)),
        "commands": AgentCommandRecord.objects.count(),
        "anomalies": AgentAnomaly.objects.count(),
        "sessions": set(InteractiveSession.objects.values_list("pk", flat=True)),
        "messages": SessionMessage.objects.count(),
        "dead letters": DeadLetter.objects.count(),
    }


def test_old_rows_go_and_recent_ones_stay(installation):
    results = {(r.kind, r.table): r for r in prune(now=NOW)}
    after = state()
    assert after["failures"] == installation["failures"]
    assert after["restarts"] == installation["restarts"]
    assert after["commands"] == after["anomalies"] == 1
    assert after["sessions"] == installation["sessions"]
    assert after["messages"] == 3 * len(installation["sessions"])
    assert after["dead letters"] == 2
    failures = results[("failures", "supervision_failures")]
    assert failures.deleted == 4 and failures.kept_back == 1
    sessions = results[("sessions", InteractiveSession._meta.db_table)]
    assert sessions.deleted == 2 and sessions.children == 6
    assert prune(now=NOW) and state() == after  # a second run finds nothing more


def test_a_dry_run_counts_what_a_prune_deletes_and_changes_nothing(installation):
    before = state()
    counted = {(r.kind, r.table): (r.deleted, r.children, r.kept_back) for r in prune(now=NOW, dry_run=True)}
    assert state() == before
    deleted = {(r.kind, r.table): (r.deleted, r.children, r.kept_back) for r in prune(now=NOW)}
    assert counted == deleted
    assert counted[("failures", "supervision_failures")] == (4, 0, 1)
    assert counted[("restarts", "supervision_restarts")] == (2, 0, 0)


def test_batches_are_small_and_rows_kept_back_do_not_stop_the_walk():
    dead_letters(23, OLD)
    node = SupervisionNode.objects.create(node_id="batched", node_type="Service", node_type_detail="db")
    referenced = []
    for n in range(12):
        made = failure(node, f"old {n}", OLD + timedelta(seconds=n))
        if n % 3 == 0:  # every third is referenced by a recent restart: kept back, skipped by the walk
            restart(node, RECENT, made)
            referenced.append(made.pk)
    results = {r.kind: r for r in prune(now=NOW, batch_size=5, only=["dead_letters", "failures"])}
    letters = results["dead_letters"]
    assert (letters.deleted, letters.batches, letters.largest_batch) == (23, 5, 5)
    failures = results["failures"]
    assert failures.deleted == 8 and failures.kept_back == 4 and failures.batches == 3
    assert failures.largest_batch <= 5
    assert set(SupervisionFailure.objects.values_list("pk", flat=True)) == set(referenced)
    assert DeadLetter.objects.count() == 0


def test_only_and_forever(installation):
    before = state()
    with override_settings(RETENTION_DAYS={**RETENTION, "dead_letters": 0}):
        results = prune(now=NOW, only=["dead_letters"])
    assert results[0].notes == ["kept forever (retention 0)"]
    assert state() == before
    prune(now=NOW, only=["events"])
    after = state()
    assert after["commands"] == after["anomalies"] == 1
    assert after["failures"] == before["failures"] and after["dead letters"] == before["dead letters"]
    with pytest.raises(ValueError):
        prune(only=["nodes"])


def test_the_command_reports_counts(installation):
    stdout = io.StringIO()
    call_command("prune", "--dry-run", stdout=stdout)
    text = stdout.getvalue()
    assert "would delete 4 rows older than 90 days" in text
    assert "1 kept back" in text and "with 6 messages" in text
    stdout = io.StringIO()
    call_command("prune", "--only", "sessions", "--batch", "1", stdout=stdout)
    assert "deleted 2 rows older than 30 days" in stdout.getvalue() and "in 2 batches" in stdout.getvalue()
