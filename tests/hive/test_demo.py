"""seed_hive writes a realistic hive through the models, and a second run changes nothing."""

from __future__ import annotations

import pytest

from hive.demo import seed_hive
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
)
from tests.hive.sqlite_files import HIVE_DATABASES

pytestmark = pytest.mark.django_db(databases=HIVE_DATABASES)


def table_counts() -> dict[str, int]:
    return {
        "swarms": Swarm.objects.count(),
        "queens": HiveAgent.objects.queens().count(),
        "workers": HiveAgent.objects.workers().count(),
        "agents": HiveAgent.objects.count(),
        "tasks": Task.objects.count(),
        "collective_memory": CollectiveMemory.objects.count(),
        "consensus_decisions": ConsensusDecision.objects.count(),
        "sessions": HiveSession.objects.count(),
        "session_checkpoints": SessionCheckpoint.objects.count(),
        "session_logs": SessionLog.objects.count(),
        "memory_entries": MemoryEntry.objects.count(),
    }


def test_seed_hive_fills_the_tables_of_an_empty_hive():
    counts = seed_hive()
    assert counts == table_counts()
    assert counts["swarms"] == counts["queens"] == counts["consensus_decisions"] == 1
    assert counts["workers"] == 4 and counts["tasks"] == 8 and counts["memory_entries"] == 20
    swarm = Swarm.objects.get()
    assert swarm.agents.queens().get().name == "Queen Coordinator"
    assert {agent.type for agent in swarm.agents.workers()} == {"researcher", "coder", "analyst", "tester"}
    assert all(isinstance(agent.capabilities, list) and agent.capabilities for agent in swarm.agents.all())
    assert CollectiveMemory.objects.get(key="objective").value == swarm.objective
    decision = ConsensusDecision.objects.get()
    assert set(decision.votes) == set(HiveAgent.objects.values_list("pk", flat=True))
    assert 0 <= decision.confidence <= 1
    assert all(task.agent.swarm == swarm for task in Task.objects.select_related("agent__swarm"))
    assert MemoryEntry.objects.values("namespace").distinct().count() >= 3


def test_seed_hive_twice_updates_the_same_rows():
    first = seed_hive(swarms=2, workers_per_swarm=3, memory_entries=5, seed=7)
    assert seed_hive(swarms=2, workers_per_swarm=3, memory_entries=5, seed=7) == first
    assert table_counts() == first
    assert first["swarms"] == 2 and first["workers"] == 6


def test_other_seeds_add_other_swarms():
    seed_hive(seed=1, memory_entries=0)
    seed_hive(seed=2, memory_entries=0)
    assert Swarm.objects.count() == 2
    assert HiveAgent.objects.queens().count() == 2
