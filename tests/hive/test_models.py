"""The hive models over the claude-flow tables: roles, timestamps, cascades, memory entries."""

from __future__ import annotations

import datetime
import re

import pytest
from django.db import IntegrityError, connections, transaction

from hive.fields import from_unix, parse_timestamp, unix_now
from hive.models import (
    CollectiveMemory,
    ConsensusDecision,
    HiveAgent,
    HiveSession,
    MemoryEntry,
    SessionCheckpoint,
    SessionLog,
    Swarm,
    Task,
    claude_flow_id,
)
from tests.hive.sqlite_files import HIVE_DATABASES

pytestmark = pytest.mark.django_db(databases=HIVE_DATABASES)

UTC = datetime.UTC


def raw(alias, sql, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture
def swarm():
    swarm = Swarm.objects.create(name="billing", objective="Build the billing API")
    HiveAgent.objects.create(swarm=swarm, name="Queen Coordinator", type="coordinator", role="queen")
    HiveAgent.objects.create(swarm=swarm, name="Coder Worker 1", type="coder", role="worker")
    HiveAgent.objects.create(swarm=swarm, name="Tester Worker 2", type="tester")
    return swarm


def test_queens_and_workers_are_agents_rows_told_apart_by_role(swarm):
    raw(
        "hive", "INSERT INTO agents (id, swarm_id, name, type, role) VALUES ('old', %s, 'Old', 'coder', '')", [swarm.pk]
    )
    assert [agent.name for agent in HiveAgent.objects.queens()] == ["Queen Coordinator"]
    assert HiveAgent.objects.workers().count() == 3
    assert swarm.agents.queens().get().is_queen
    assert {agent.name for agent in swarm.agents.workers()} == {"Coder Worker 1", "Tester Worker 2", "Old"}
    assert HiveAgent.objects.get(name="Tester Worker 2").role == "worker"  # the default role


def test_text_ids_look_like_claude_flows(swarm):
    assert re.fullmatch(r"swarm-\d{13}-[0-9a-z]{9}", swarm.pk)
    assert claude_flow_id("task").startswith("task-")
    assert Swarm.objects.get(pk=swarm.pk) == swarm


def test_timestamps_are_written_as_current_timestamp_text(swarm):
    created_at, updated_at = raw(
        "hive", "SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT) FROM swarms WHERE id = %s", [swarm.pk]
    )[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created_at)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", updated_at)
    assert Swarm.objects.get(pk=swarm.pk).created_at.tzinfo is not None


def test_timestamps_in_any_claude_flow_format_read_without_error(swarm):
    raw(
        "hive",
        "UPDATE swarms SET created_at = '2025-01-02T03:04:05.678Z', updated_at = 1735787045678 WHERE id = %s",
        [swarm.pk],
    )
    raw("hive", "UPDATE agents SET created_at = 'not a date' WHERE role = 'queen'")
    raw("hive", "UPDATE agents SET created_at = '2025-02-30 10:00:00' WHERE role = 'worker'")  # impossible date
    swarm = Swarm.objects.get(pk=swarm.pk)
    assert swarm.created_at == datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert swarm.updated_at == datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert {agent.created_at for agent in swarm.agents.all()} == {None}
    assert list(Swarm.objects.values_list("created_at", flat=True)) == [swarm.created_at]


def test_parse_timestamp_and_from_unix():
    moment = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_timestamp("2025-01-02 03:04:05") == moment
    assert parse_timestamp("2025-01-02T03:04:05Z") == moment
    assert parse_timestamp("2025-01-02T04:04:05+01:00") == moment
    assert parse_timestamp(1735787045) == moment
    assert parse_timestamp("1735787045000") == moment
    assert parse_timestamp("") is None
    assert parse_timestamp("yesterday") is None
    assert from_unix(None) is None
    assert from_unix("nonsense") is None
    assert from_unix(1735787045) == moment


def test_completing_a_task_records_when(swarm):
    task = Task.objects.create(swarm=swarm, description="Write the tests")
    assert task.completed_at is None and task.priority == 5 and task.status == "pending"
    task.status = "completed"
    task.save(update_fields=["status"])
    assert Task.objects.get(pk=task.pk).completed_at is not None


def test_collective_memory_size_is_the_value_in_bytes(swarm):
    memory = CollectiveMemory.objects.create(swarm=swarm, key="objective", value="héllo")
    assert raw("hive", "SELECT size FROM collective_memory WHERE id = %s", [memory.pk]) == [(6,)]


def test_capabilities_and_votes_are_json_text(swarm):
    queen = swarm.agents.queens().get()
    queen.capabilities = ["coordination", "planning"]
    queen.save()
    ConsensusDecision.objects.create(swarm=swarm, topic="Storage", votes={queen.pk: "approve"}, confidence=1)
    assert raw("hive", "SELECT capabilities FROM agents WHERE id = %s", [queen.pk]) == [
        ('["coordination", "planning"]',)
    ]
    raw("hive", "UPDATE agents SET capabilities = 'coding, testing' WHERE id = %s", [queen.pk])
    assert HiveAgent.objects.get(pk=queen.pk).capabilities == "coding, testing"  # bad JSON still reads


def test_deleting_a_swarm_cascades_through_claude_flows_foreign_keys(swarm):
    worker = swarm.agents.workers().first()
    Task.objects.create(swarm=swarm, agent=worker, description="Port the parser")
    CollectiveMemory.objects.create(swarm=swarm, key="objective", value="x")
    ConsensusDecision.objects.create(swarm=swarm, topic="Parser")
    session = HiveSession.objects.create(swarm=swarm, swarm_name=swarm.name)
    SessionCheckpoint.objects.create(session=session, checkpoint_name="auto")
    SessionLog.objects.create(session=session, message="Session created")
    other = Swarm.objects.create(name="other")
    HiveAgent.objects.create(swarm=other, name="Queen", type="coordinator", role="queen")

    swarm.delete()

    for model in (Task, CollectiveMemory, ConsensusDecision, HiveSession, SessionCheckpoint, SessionLog):
        assert not model.objects.exists(), model
    assert list(HiveAgent.objects.values_list("name", flat=True)) == ["Queen"]
    assert raw("hive", "PRAGMA foreign_key_check") == []


def test_deleting_an_agent_unassigns_its_tasks(swarm):
    worker = swarm.agents.workers().first()
    task = Task.objects.create(swarm=swarm, agent=worker)
    HiveAgent.objects.filter(pk=worker.pk).delete()
    assert Task.objects.get(pk=task.pk).agent is None


def test_foreign_keys_are_still_enforced_at_commit(swarm):
    with pytest.raises(IntegrityError), transaction.atomic(using="hive"):
        raw("hive", "INSERT INTO agents (id, swarm_id, name, type) VALUES ('a', 'no-such-swarm', 'A', 'coder')")


def test_memory_entries_use_unix_seconds_and_ttls():
    before = unix_now()
    entry = MemoryEntry.objects.create(key="swarm/objective", value="ship it", ttl=60)
    assert entry.namespace == "default"
    row = raw("hive_memory", "SELECT created_at, updated_at, expires_at FROM memory_entries WHERE id = %s", [entry.pk])
    created_at, updated_at, expires_at = row[0]
    assert before <= created_at <= updated_at and expires_at == updated_at + 60
    entry = MemoryEntry.objects.get(pk=entry.pk)
    assert entry.created == datetime.datetime.fromtimestamp(created_at, tz=UTC)
    assert entry.expires > entry.created and not entry.is_expired
    entry.expires_at = before - 1
    assert entry.is_expired


def test_memory_keys_are_unique_per_namespace():
    MemoryEntry.objects.create(key="k", value="1")
    MemoryEntry.objects.create(key="k", value="2", namespace="hooks")
    with pytest.raises(IntegrityError), transaction.atomic(using="hive_memory"):
        MemoryEntry.objects.create(key="k", value="3")
    assert MemoryEntry.objects.count() == 2
    assert not raw("hive", "SELECT name FROM sqlite_master WHERE name = 'memory_entries'")
