"""Restarts through the real PostgreSQL and NATS: policy rules, strategies, concurrency, outages."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection, connections
from django.utils import timezone

from agents.models import Agent
from mistersmith.jetstream import client as nats
from supervision import services
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy, SupervisionRestart

pytestmark = pytest.mark.django_db


def node(name: str, parent=None, node_type: str = "Service", **policy) -> SupervisionNode:
    kwargs = {"node_type_detail": "x"} if node_type != "RootSupervisor" else {}
    if node_type in ("Worker", "AgentSupervisor"):
        kwargs["agent"] = Agent.objects.create(name=f"{name}-agent")
    # Distinct start times: inside one test transaction now() would be the same for every node.
    started = timezone.now() + timedelta(milliseconds=SupervisionNode.objects.count())
    created = SupervisionNode.objects.create(
        node_id=f"{name}-{uuid.uuid4().hex[:6]}", node_type=node_type, parent=parent, created_at=started, **kwargs
    )
    if policy is not None and policy != {"none": True}:
        SupervisionPolicy.objects.create(node=created, **policy)
    return created


def fail(target: SupervisionNode, count: int, *, ago: timedelta = timedelta(0)) -> None:
    SupervisionFailure.objects.bulk_create(
        SupervisionFailure(node=target, failure_reason="Crash", failure_detail="boom", occurred_at=timezone.now() - ago)
        for _ in range(count)
    )


def stream_message(sequence: int):
    client = nats.connection()
    return client.run(client.client().jetstream().get_msg("SYSTEM_EVENTS", sequence))


def sql_delay(policy: SupervisionPolicy, attempt: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT calculate_restart_delay(%s, %s)", [policy.pk, attempt])
        return cursor.fetchone()[0]


def test_restart_records_the_row_and_publishes_the_command(admin_user):
    root = node("root", node_type="RootSupervisor")
    worker = node("w", parent=root, node_type="Worker", max_restarts=5, min_restart_delay_ms=100)
    outcome = services.request_restart(worker.pk, user=admin_user, reason="stuck on a tool call")
    assert outcome.status == "requested"
    (restart,) = SupervisionRestart.objects.filter(node=worker)
    assert (restart.restart_attempt_number, restart.restart_delay_ms) == (1, sql_delay(worker.policy, 1))
    assert restart.requested_by == admin_user and restart.reason == "stuck on a tool call"
    assert restart.completed_at is None and restart.command_sequence > 0

    message = stream_message(restart.command_sequence)
    assert message.subject == "system.control"
    assert message.headers["Nats-Msg-Id"] == str(restart.pk)
    body = json.loads(message.data)
    assert body["message_id"] == str(restart.pk)
    assert body["payload"]["RestartNode"] == {
        "restart_id": str(restart.pk),
        "node_id": str(worker.pk),
        "node_name": worker.node_id,
        "attempt": 1,
        "delay_ms": restart.restart_delay_ms,
        "requested_by": "admin",
        "reason": "stuck on a tool call",
    }
    assert LogEntry.objects.filter(
        object_id=str(worker.pk), user=admin_user, change_message__startswith="Restart requested"
    ).exists()


def test_attempt_counts_the_restarts_inside_the_window(admin_user):
    target = node(
        "attempts", node_type="RootSupervisor", max_restarts=10, time_window_seconds=60, backoff_strategy="Linear"
    )
    now = timezone.now()
    for started in (now - timedelta(minutes=5), now - timedelta(seconds=10), now - timedelta(seconds=5)):
        SupervisionRestart.objects.create(
            node=target,
            restart_attempt_number=1,
            restart_delay_ms=0,
            started_at=started,
            completed_at=started,
            success=True,
        )
    outcome = services.request_restart(target.pk, user=admin_user)
    (restart,) = outcome.restarts
    assert restart.restart_attempt_number == 3
    assert restart.restart_delay_ms == 100 + 1000 * 3


def test_full_window_refuses_and_escalates_to_the_parent(admin_user):
    root = node("esc-root", node_type="RootSupervisor", max_restarts=5)
    child = node("esc-child", parent=root, max_restarts=2, escalate_on_limit=True)
    fail(child, 2)
    fail(child, 5, ago=timedelta(hours=1))  # outside the window: not counted
    plan = services.plan_restart(child.pk)
    assert (plan.allowed, plan.failures_in_window, plan.escalate_to) == (False, 2, root)
    outcome = services.request_restart(child.pk, user=admin_user)
    assert outcome.status == "escalated" and "limit of 2" in outcome.message
    assert not SupervisionRestart.objects.filter(node=child).exists()
    escalated = SupervisionFailure.objects.filter(node=child, escalated_to_parent=True)
    assert escalated.count() == 1 and escalated.get().recovery_action == f"escalated to {root}"


def test_full_window_without_escalation_is_refused(admin_user):
    lonely = node("refused", node_type="RootSupervisor", max_restarts=1, escalate_on_limit=True)
    fail(lonely, 1)
    outcome = services.request_restart(lonely.pk, user=admin_user)
    assert outcome.status == "refused" and "limit of 1" in outcome.message
    assert not SupervisionRestart.objects.exists()
    assert LogEntry.objects.filter(object_id=str(lonely.pk), change_message__startswith="Restart refused").exists()


def test_node_without_policy_is_refused(admin_user):
    bare = node("bare", none=True)
    outcome = services.request_restart(bare.pk, user=admin_user)
    assert outcome.status == "refused" and "no supervision policy" in outcome.message


def test_unknown_node_is_a_clear_error(admin_user):
    with pytest.raises(services.RestartError, match="no supervision node"):
        services.request_restart(uuid.uuid4(), user=admin_user)


def test_escalate_strategy_hands_the_failure_to_the_supervisor(admin_user):
    root = node("s-root", node_type="RootSupervisor", max_restarts=5)
    child = node("s-child", parent=root, supervision_strategy="Escalate")
    outcome = services.request_restart(child.pk, user=admin_user)
    assert outcome.status == "escalated" and outcome.plan.escalate_to == root


def siblings(strategy: str):
    root = node(f"{strategy}-root", node_type="RootSupervisor", max_restarts=5)
    first, second, third = (node(f"{strategy}-{i}", parent=root, supervision_strategy=strategy) for i in range(3))
    return first, second, third


def test_one_for_all_restarts_every_sibling(admin_user):
    first, second, third = siblings("OneForAll")
    plan = services.plan_restart(second.pk)
    assert [t.node for t in plan.targets] == [second, first, third]
    outcome = services.request_restart(second.pk, user=admin_user, confirmed_fingerprint=plan.fingerprint)
    assert {r.node for r in outcome.restarts} == {first, second, third}
    assert all("by strategy" in r.reason for r in outcome.restarts if r.node != second)


def test_rest_for_one_restarts_the_siblings_started_after_it(admin_user):
    _, second, third = siblings("RestForOne")
    outcome = services.request_restart(second.pk, user=admin_user)
    assert [r.node for r in outcome.restarts] == [second, third]


def test_a_pending_restart_makes_the_next_request_already_restarting(admin_user):
    target = node("pending", node_type="RootSupervisor", max_restarts=5)
    assert services.request_restart(target.pk, user=admin_user).status == "requested"
    second = services.request_restart(target.pk, user=admin_user)
    assert second.status == "already_restarting"
    assert SupervisionRestart.objects.filter(node=target).count() == 1


def test_a_stale_confirmation_is_refused(admin_user):
    first, _, _ = siblings("OneForOne")
    plan = services.plan_restart(first.pk)
    SupervisionPolicy.objects.filter(node=first).update(supervision_strategy="OneForAll")
    outcome = services.request_restart(first.pk, user=admin_user, confirmed_fingerprint=plan.fingerprint)
    assert outcome.status == "stale"
    assert not SupervisionRestart.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_people_pressing_restart_at_once_make_one_restart(admin_user):
    target = node("race", node_type="RootSupervisor", max_restarts=5)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def press():
        try:
            barrier.wait()
            outcomes.append(services.request_restart(target.pk, user=admin_user).status)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["already_restarting", "requested"]
    assert SupervisionRestart.objects.filter(node=target).count() == 1


@pytest.fixture
def nats_down(settings):
    """The console's NATS connection pointed at a port where nothing listens."""
    settings.NATS_URL = "nats://127.0.0.1:9"
    nats.nats_url.cache_clear()
    nats.reset_connection()
    yield
    nats.nats_url.cache_clear()
    nats.reset_connection()


def test_nats_down_fails_clearly_and_leaves_no_row(admin_user, nats_down):
    target = node("offline", node_type="RootSupervisor", max_restarts=5)
    with pytest.raises(services.RestartError, match="not sent"):
        services.request_restart(target.pk, user=admin_user)
    assert not SupervisionRestart.objects.exists()
    assert not LogEntry.objects.filter(object_id=str(target.pk)).exists()


def test_unanswered_restarts_time_out_after_delay_plus_escalation_timeout():
    target = node("slow", node_type="RootSupervisor", escalation_timeout_seconds=10)
    started = timezone.now() - timedelta(seconds=11)
    overdue = SupervisionRestart.objects.create(
        node=target, restart_attempt_number=1, restart_delay_ms=500, started_at=started, command_sequence=1
    )
    in_time = SupervisionRestart.objects.create(
        node=target, restart_attempt_number=2, restart_delay_ms=5000, started_at=started, command_sequence=2
    )
    runtime_own = SupervisionRestart.objects.create(
        node=target, restart_attempt_number=3, restart_delay_ms=0, started_at=started
    )
    assert services.expire_overdue_restarts() == 1
    overdue.refresh_from_db()
    assert overdue.success is False and overdue.completed_at is not None
    assert overdue.error_message.startswith("Timed out: no RestartCompleted within 10500 ms")
    for untouched in (in_time, runtime_own):
        untouched.refresh_from_db()
        assert untouched.completed_at is None


@pytest.mark.django_db(transaction=True)
def test_a_restart_waits_on_nats_with_its_rows_committed_and_no_connection_held(admin_user, monkeypatch):
    """Issue 12, item 6: the row locks and the connection are given up before NATS is asked; the
    committed row (sequence NOT_YET_SENT) already stands for the restart to every other request."""
    import psycopg

    import mistersmith.jetstream.client as console_nats
    from mistersmith.embedded import postgres_url

    url = postgres_url(connection.settings_dict)
    root = node("root", node_type="RootSupervisor")
    worker = node("held", parent=root, node_type="Worker", max_restarts=5)
    waits: list[tuple[bool, bool, list]] = []
    release = console_nats.release_connections

    def observed_release() -> None:
        release()
        with psycopg.connect(url) as other:  # what every other request sees meanwhile
            rows = other.execute("SELECT command_sequence FROM supervision_restarts WHERE node_id = %s", [worker.pk])
            rows = rows.fetchall()
        waits.append((connection.in_atomic_block, connection.connection is None, rows))

    monkeypatch.setattr(console_nats, "release_connections", observed_release)
    outcome = services.request_restart(worker.pk, user=admin_user)
    assert outcome.status == "requested"
    assert waits, "no NATS wait was seen"
    assert all(not in_atomic and released for in_atomic, released, _ in waits), waits
    assert waits[-1][2] == [(services.NOT_YET_SENT,)]  # committed, visible to others, not yet sent
    assert SupervisionRestart.objects.get(node=worker).command_sequence > 0
