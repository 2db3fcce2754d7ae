"""A realistic hive for demos and tests, written through the models as claude-flow would.

``hive-mind spawn`` makes a swarm, a "Queen Coordinator" and typed workers, stores the
objective and configuration in collective memory, hands out tasks and records consensus;
the memory store holds entries in a few namespaces. Ids are derived from ``seed``, so a
second run updates the same rows instead of adding new ones.
"""

from __future__ import annotations

import json
import random

from django.db import transaction

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
from hive.routers import HIVE_DB, MEMORY_DB

OBJECTIVES = (
    "Build a REST API for the billing service",
    "Migrate the reporting jobs to the event pipeline",
    "Audit the authentication flow and fix the findings",
    "Write end-to-end tests for the checkout",
)
QUEEN_TYPES = ("strategic", "tactical", "adaptive")
WORKER_TYPES = ("researcher", "coder", "analyst", "tester", "architect", "reviewer", "optimizer", "documenter")
CAPABILITIES = {
    "coordinator": ["coordination", "planning", "decision-making"],
    "researcher": ["web-search", "data-gathering", "analysis"],
    "coder": ["code-generation", "refactoring", "debugging"],
    "analyst": ["data-analysis", "performance-metrics", "reporting"],
    "tester": ["test-generation", "quality-assurance", "validation"],
    "architect": ["system-design", "architecture-patterns", "scalability"],
    "reviewer": ["code-review", "standards-enforcement", "security-review"],
    "optimizer": ["performance-tuning", "bottleneck-analysis", "caching"],
    "documenter": ["documentation", "api-docs", "user-guides"],
}
TASKS = {
    "researcher": ("Survey existing solutions", "Collect requirements from the issue tracker"),
    "coder": ("Implement the endpoints", "Refactor the data access layer"),
    "analyst": ("Profile the slow queries", "Report on error rates"),
    "tester": ("Write integration tests", "Run the regression suite"),
    "architect": ("Draft the component diagram", "Choose the storage engine"),
    "reviewer": ("Review the pull requests", "Check the security findings"),
    "optimizer": ("Tune the connection pool", "Cache the hot lookups"),
    "documenter": ("Write the API reference", "Update the runbook"),
}
TASK_STATUSES = ("pending", "in_progress", "completed", "completed")
NAMESPACES = ("default", "swarm", "hooks", "sparc", "coordination")


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(9))


def seed_hive(swarms: int = 1, workers_per_swarm: int = 4, memory_entries: int = 20, seed: int = 0) -> dict[str, int]:
    """Write ``swarms`` swarms (a queen and ``workers_per_swarm`` workers each, with tasks, collective
    memory, a consensus decision and a session) and ``memory_entries`` memory entries; return row counts.
    """
    rng = random.Random(seed)
    counts = dict.fromkeys(
        (
            "swarms",
            "queens",
            "workers",
            "tasks",
            "collective_memory",
            "consensus_decisions",
            "sessions",
            "session_checkpoints",
            "session_logs",
            "memory_entries",
        ),
        0,
    )
    with transaction.atomic(using=HIVE_DB):
        for number in range(swarms):
            _seed_swarm(rng, seed, number, workers_per_swarm, counts)
    with transaction.atomic(using=MEMORY_DB):
        for number in range(memory_entries):
            _seed_memory_entry(rng, number)
            counts["memory_entries"] += 1
    counts["agents"] = counts["queens"] + counts["workers"]
    return counts


def _seed_swarm(rng: random.Random, seed: int, number: int, workers: int, counts: dict[str, int]) -> None:
    started_ms = 1_750_000_000_000 + seed * 86_400_000 + number * 60_000
    objective = OBJECTIVES[(seed + number) % len(OBJECTIVES)]
    queen_type = rng.choice(QUEEN_TYPES)
    swarm, _ = Swarm.objects.update_or_create(
        id=f"swarm-{started_ms}-{_suffix(rng)}",
        defaults={"name": f"hive-{started_ms}", "objective": objective, "status": "active", "queen_type": queen_type},
    )
    counts["swarms"] += 1

    queen, _ = HiveAgent.objects.update_or_create(
        id=f"queen-{swarm.id}",
        defaults={
            "swarm": swarm,
            "name": "Queen Coordinator",
            "type": "coordinator",
            "role": HiveAgent.QUEEN,
            "status": "active",
            "capabilities": CAPABILITIES["coordinator"],
        },
    )
    counts["queens"] += 1

    crew = []
    for index in range(workers):
        kind = WORKER_TYPES[index % len(WORKER_TYPES)]
        worker, _ = HiveAgent.objects.update_or_create(
            id=f"worker-{swarm.id}-{index}",
            defaults={
                "swarm": swarm,
                "name": f"{kind.capitalize()} Worker {index + 1}",
                "type": kind,
                "role": HiveAgent.WORKER,
                "status": rng.choice(("idle", "busy", "active")),
                "capabilities": CAPABILITIES[kind],
            },
        )
        crew.append(worker)
        counts["workers"] += 1
        for step, description in enumerate(TASKS[kind]):
            status = rng.choice(TASK_STATUSES)
            Task.objects.update_or_create(
                id=f"task-{started_ms + index * 10 + step}-{swarm.id[-9:]}",
                defaults={
                    "swarm": swarm,
                    "agent": worker,
                    "description": description,
                    "status": status,
                    "priority": rng.randint(1, 10),
                    "result": json.dumps({"summary": f"{description}: done"}) if status == "completed" else None,
                },
            )
            counts["tasks"] += 1

    knowledge = [
        ("objective", objective, "context", queen.id),
        ("queen_type", queen_type, "config", queen.id),
        ("worker_count", str(workers), "metrics", queen.id),
    ]
    knowledge += [
        (f"{worker.type}/{index}/findings", f"Notes from {worker.name}", "knowledge", worker.id)
        for index, worker in enumerate(crew)
    ]
    for key, value, kind, author in knowledge:
        CollectiveMemory.objects.update_or_create(
            id=f"memory-{swarm.id}-{key}",
            defaults={
                "swarm": swarm,
                "key": key,
                "value": value,
                "type": kind,
                "confidence": round(rng.uniform(0.6, 1.0), 2),
                "created_by": author,
                "access_count": rng.randint(0, 12),
            },
        )
        counts["collective_memory"] += 1

    votes = {agent.id: rng.choice(("approve", "approve", "reject")) for agent in [queen, *crew]}
    approvals = sum(vote == "approve" for vote in votes.values())
    ConsensusDecision.objects.update_or_create(
        id=f"consensus-{swarm.id}",
        defaults={
            "swarm": swarm,
            "topic": f"Plan for: {objective}",
            "decision": "approve" if approvals * 2 > len(votes) else "reject",
            "votes": votes,
            "algorithm": "majority",
            "confidence": round(approvals / len(votes), 2),
        },
    )
    counts["consensus_decisions"] += 1

    session, _ = HiveSession.objects.update_or_create(
        id=f"session-{started_ms}-{swarm.id[-9:]}",
        defaults={
            "swarm": swarm,
            "swarm_name": swarm.name,
            "objective": objective,
            "status": "active",
            "completion_percentage": 0,
            "metadata": {"queenType": queen_type, "workerCount": workers},
            "child_pids": [],
        },
    )
    counts["sessions"] += 1
    SessionCheckpoint.objects.update_or_create(
        id=f"checkpoint-{session.id}-spawn",
        defaults={"session": session, "checkpoint_name": "auto-save-spawn", "checkpoint_data": {"phase": "spawned"}},
    )
    counts["session_checkpoints"] += 1
    for message in ("Session created", "Checkpoint saved: auto-save-spawn"):
        SessionLog.objects.get_or_create(session=session, message=message, defaults={"log_level": "info"})
        counts["session_logs"] += 1


def _seed_memory_entry(rng: random.Random, number: int) -> None:
    namespace = NAMESPACES[number % len(NAMESPACES)]
    key = f"{namespace}/entry-{number:03d}"
    MemoryEntry.objects.update_or_create(
        key=key,
        namespace=namespace,
        defaults={
            "value": json.dumps({"note": f"value {number}", "score": round(rng.random(), 3)}),
            "metadata": {"source": "seed_hive", "tags": [namespace]},
            "access_count": rng.randint(0, 50),
            "ttl": rng.choice((None, None, 3600, 86_400)),
        },
    )
