"""Files written by an older claude-flow (fewer columns, no session tables) read, edit and delete fine."""

from __future__ import annotations

import datetime

import pytest
from django.db import connections
from django.urls import reverse

from hive.introspection import absent_attnames, table_columns
from hive.models import CollectiveMemory, HiveAgent, HiveSession, MemoryEntry, Swarm, Task
from tests.hive.sqlite_files import HIVE_DATABASES, raw_rows

pytestmark = pytest.mark.django_db(databases=HIVE_DATABASES)

NEWER_MEMORY_COLUMNS = {"accessed_at", "access_count", "compressed", "size"}


def test_the_file_is_asked_for_its_columns_once_per_connection(old_hive_files, django_assert_num_queries):
    assert absent_attnames(CollectiveMemory) == NEWER_MEMORY_COLUMNS
    assert absent_attnames(Swarm) == frozenset()
    assert absent_attnames(MemoryEntry) == {"accessed_at", "access_count", "ttl", "expires_at"}
    with django_assert_num_queries(0, connection=connections["hive"]):
        assert "accessed_at" not in table_columns("hive", "collective_memory")
    assert table_columns("hive", "no_such_table") is None


def test_missing_tables_are_created_and_existing_ones_left_alone(old_hive_files):
    hive_path, _ = old_hive_files
    connections["hive"].ensure_connection()
    tables = {row[0] for row in raw_rows(hive_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "session_checkpoints", "session_logs"} <= tables
    columns = {row[1] for row in raw_rows(hive_path, "PRAGMA table_info(collective_memory)")}
    assert not columns & NEWER_MEMORY_COLUMNS
    assert raw_rows(hive_path, "PRAGMA journal_mode") == [("wal",)]


def test_the_manager_defers_absent_columns_and_they_read_as_none(old_hive_files, django_assert_num_queries):
    memory = CollectiveMemory.objects.select_related("swarm").get()
    assert memory.key == "objective" and memory.swarm.name == "old-hive"
    assert memory.get_deferred_fields() == NEWER_MEMORY_COLUMNS
    with django_assert_num_queries(0, connection=connections["hive"]):
        assert (memory.access_count, memory.size, memory.compressed, memory.accessed_at) == (None, None, None, None)
    assert list(CollectiveMemory.objects.iterator()) == [memory]
    assert CollectiveMemory.objects.filter(swarm__name="old-hive").count() == 1


def test_rows_read_whatever_the_format_of_their_timestamps(old_hive_files):
    swarm = Swarm.objects.get(pk="swarm-old-2")
    assert swarm.created_at == datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    assert swarm.updated_at == swarm.created_at  # stored as epoch milliseconds
    assert Swarm.objects.get(pk="swarm-old-1").created_at is not None


def test_an_old_row_saves_and_a_new_one_inserts_without_the_absent_columns(old_hive_files):
    hive_path, _ = old_hive_files
    memory = CollectiveMemory.objects.get()
    memory.value = "Read every version"
    memory.access_count = 3  # no column for it in this file: not written
    memory.save()
    CollectiveMemory.objects.create(swarm_id="swarm-old-1", key="decision", value="yes", confidence=0.5)
    rows = raw_rows(hive_path, "SELECT key, value, confidence FROM collective_memory ORDER BY key")
    assert rows == [("decision", "yes", 0.5), ("objective", "Read every version", 0.9)]


def test_roles_and_cascades_work_on_an_old_file(old_hive_files):
    hive_path, _ = old_hive_files
    assert HiveAgent.objects.queens().count() == 1
    assert HiveAgent.objects.workers().count() == 2  # one of them has no role at all
    Swarm.objects.get(pk="swarm-old-1").delete()
    assert not Task.objects.exists() and not HiveAgent.objects.exists() and not CollectiveMemory.objects.exists()
    assert raw_rows(hive_path, "SELECT id FROM swarms") == [("swarm-old-2",)]
    assert raw_rows(hive_path, "PRAGMA foreign_key_check") == []


def test_old_memory_entries_list_and_save(old_hive_files):
    _, memory_path = old_hive_files
    entry = MemoryEntry.objects.get()
    assert (entry.namespace, entry.ttl, entry.expires, entry.is_expired) == ("hooks", None, None, False)
    MemoryEntry.objects.create(key="k", value="v", ttl=60)
    assert raw_rows(memory_path, "SELECT key, namespace FROM memory_entries ORDER BY id") == [
        ("hooks/pre-task", "hooks"),
        ("k", "default"),
    ]


@pytest.mark.parametrize(
    ("model", "pk"),
    [
        (Swarm, "swarm-old-1"),
        (HiveAgent, "worker-swarm-old-1-1"),
        (Task, "task-old-1"),
        (CollectiveMemory, "memory-old-1"),
        (MemoryEntry, 1),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_the_admin_lists_and_shows_old_rows(old_hive_files, admin_client, model, pk):
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:hive_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count >= 1
    change = admin_client.get(reverse(f"admin:hive_{opts.model_name}_change", args=[pk]))
    assert change.status_code == 200
    shown = set(change.context["adminform"].form.fields) | set(change.context["adminform"].readonly_fields)
    assert not shown & absent_attnames(model)


def test_the_admin_edits_adds_and_deletes_on_an_old_file(old_hive_files, admin_client):
    hive_path, _ = old_hive_files
    url = reverse("admin:hive_collectivememory_change", args=["memory-old-1"])
    data = {"swarm": "swarm-old-1", "key": "objective", "value": "edited", "type": "context", "confidence": "0.8"}
    assert admin_client.post(url, data).status_code == 302
    added = admin_client.post(reverse("admin:hive_collectivememory_add"), {**data, "id": "memory-new", "key": "new"})
    assert added.status_code == 302
    assert raw_rows(hive_path, "SELECT id, value FROM collective_memory ORDER BY id") == [
        ("memory-new", "edited"),
        ("memory-old-1", "edited"),
    ]
    deleted = admin_client.post(reverse("admin:hive_swarm_delete", args=["swarm-old-1"]), {"post": "yes"})
    assert deleted.status_code == 302
    assert raw_rows(hive_path, "SELECT count(*) FROM collective_memory") == [(0,)]
    assert not HiveSession.objects.exists()
