"""Bulk Pause, Resume and Stop: many agents, one command each, through agents.commands.

Oban Web's and Temporal's batch actions are the model: the person picks agents (a selection of the
live list, or everything its filter matches), a confirmation counts them and says how many the
lifecycle lets the command reach, and a page of its own shows each agent's result as it comes.

Why a run of its own (:class:`~agents.models.BulkCommandRun`) and a background thread: a command
waits up to 5 s for the runtime's answer (a graceful stop longer), so a thousand agents cannot be
done inside one request. The run is committed with its agent ids, then worked off by
:data:`CONCURRENCY` threads, each sending one command at a time with
:func:`agents.commands.send_agent_command` (the one place a command is checked, sent, recorded and
logged in the agent's admin history). Every answer becomes an AgentCommandRecord of the run, so the
run's page (and a reload, or another person) sees the results as they land.

Scale: a run takes at most :data:`BULK_LIMIT` agents. A filter that matches more is refused with the
count and a request to narrow it: a thousand commands are already a few minutes against a runtime
that does not answer, and nobody checks ten thousand results. The count reads at most
BULK_LIMIT + 1 ids (no unbounded COUNT).

The run lives in the web process that started it: should that process stop, the agents not yet
sent keep no record, and the run's page says the run was interrupted (no result for
:data:`STALLED_AFTER`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.models import ADDITION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, connections
from django.db.models import Count, Max
from django.utils import timezone

from agents import commands
from agents.models import Agent, AgentCommand, AgentCommandRecord, BulkCommandRun
from agents.selectors import ListFilter, matching_agents

logger = logging.getLogger(__name__)

BULK_COMMANDS = (AgentCommand.PAUSE, AgentCommand.RESUME, AgentCommand.STOP)
BULK_LIMIT = 1000
CONCURRENCY = 4  # commands in flight at once: the runtime's handler is one agent at a time anyway
STALLED_AFTER = timedelta(minutes=2)


class BulkRefused(Exception):
    """The bulk action cannot be planned (no agents, too many, unknown command); nothing was sent."""


@dataclass
class BulkPlan:
    """What a bulk command would do: the agents in order, and how many the lifecycle lets it reach."""

    command: str
    scope: str
    filters: dict[str, str]
    agent_ids: list[uuid.UUID]
    by_state: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return len(self.agent_ids)

    @property
    def reachable(self) -> int:
        """Agents whose state lets the command be sent now (the others are refused, and recorded so)."""
        allowed = commands.ALLOWED_FROM[self.command]
        return sum(count for state, count in self.by_state.items() if allowed is None or state in allowed)

    @property
    def fingerprint(self) -> str:
        """What the person confirmed: the command and the agents (a changed filter result is another plan)."""
        return f"{self.command}:{uuid.uuid5(uuid.NAMESPACE_OID, ','.join(map(str, self.agent_ids)))}"


def bulk_command(command: str) -> str:
    """Pause, Resume or Stop from its name or alias; BulkRefused for any other command."""
    try:
        found = commands.normalise_command(command)
    except ValueError as error:
        raise BulkRefused(str(error)) from error
    if found not in BULK_COMMANDS:
        raise BulkRefused("A bulk action is Pause, Resume or Stop.")
    return found


def plan_bulk(command: str, *, agent_ids: list[uuid.UUID] | None = None, filters: ListFilter | None = None) -> BulkPlan:
    """The agents a bulk ``command`` goes to: the ``agent_ids`` chosen (those that still exist), or
    every agent ``filters`` matches. At most :data:`BULK_LIMIT`; more is refused with the count."""
    command = bulk_command(command)
    if filters is not None:
        scope, query = BulkCommandRun.Scope.FILTER, filters.as_query()
        agents = matching_agents(filters)
    else:
        scope, query = BulkCommandRun.Scope.SELECTION, {}
        wanted = list(dict.fromkeys(agent_ids or []))
        if len(wanted) > BULK_LIMIT:
            raise BulkRefused(f"{len(wanted):,} agents are selected; a bulk action takes at most {BULK_LIMIT:,}.")
        agents = Agent.objects.filter(pk__in=wanted)
    rows = list(agents.order_by("name", "id").values_list("id", "status")[: BULK_LIMIT + 1])
    if len(rows) > BULK_LIMIT:
        raise BulkRefused(
            f"More than {BULK_LIMIT:,} agents match this filter; a bulk action takes at most {BULK_LIMIT:,}. "
            "Narrow the filter (a state, part of a name) and run it in parts."
        )
    if not rows:
        raise BulkRefused("No agent is selected (or the selected agents no longer exist).")
    return BulkPlan(command, scope, query, [pk for pk, _ in rows], Counter(status for _, status in rows))


def start_bulk(user: Any, plan: BulkPlan, *, wait: bool = False) -> BulkCommandRun:
    """Record the run (and a line in the admin's history: who, when, what), then send the commands on
    a background thread. ``wait``: return only when every agent has its result (commands, tests)."""
    if not user.has_perm(commands.PERMISSION):
        raise PermissionDenied("You may not send commands to agents.")
    run = BulkCommandRun.objects.create(
        command=plan.command,
        scope=plan.scope,
        filters=plan.filters,
        agent_ids=[str(pk) for pk in plan.agent_ids],
        total=plan.total,
        requested_by=user if getattr(user, "pk", None) else None,
        requested_by_name=getattr(user, "username", "")[:150],
    )
    which = f"every agent matching {plan.filters or 'no filter'}" if plan.scope == "filter" else "a selection"
    LogEntry.objects.log_actions(
        user.pk,
        [run],
        ADDITION,
        change_message=f"Bulk {plan.command} of {plan.total} agents ({which}); {plan.reachable} reachable.",
        single_object=True,
    )
    worker = threading.Thread(target=_work, args=(run.pk, user), name=f"bulk-{run.pk}", daemon=True)
    worker.start()
    if wait:
        worker.join()
    return run


def _work(run_id: uuid.UUID, user: Any) -> None:
    """Send the run's commands, CONCURRENCY at a time; mark the run finished when all have answered."""
    try:
        run = BulkCommandRun.objects.get(pk=run_id)
        ids = [uuid.UUID(pk) for pk in run.agent_ids]
        with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix=f"bulk-{run_id.hex[:8]}") as pool:
            list(pool.map(lambda pk: _send_one(run, user, pk), ids))
        BulkCommandRun.objects.filter(pk=run_id).update(finished_at=timezone.now())
    except Exception:
        logger.exception("bulk run %s stopped", run_id)
    finally:
        connections.close_all()


def _send_one(run: BulkCommandRun, user: Any, agent_id: uuid.UUID) -> None:
    """One agent's command: its record is the result (a refusal or a missing answer is recorded too)."""
    close_old_connections()
    try:
        agent = Agent.objects.filter(pk=agent_id).first() or Agent(pk=agent_id, name="(deleted)")
        commands.send_agent_command(user, agent, run.command, bulk_run_id=run.pk)
    except commands.CommandError:
        pass  # recorded by the command service, with its outcome
    except Exception as error:  # one agent's failure must not end the others' commands
        logger.exception("bulk run %s: %s to %s failed", run.pk, run.command, agent_id)
        AgentCommandRecord.objects.create(
            agent_id=agent_id,
            command=run.command,
            requested_by_name=run.requested_by_name,
            outcome=commands.CommandOutcome.ERROR,
            detail=f"The console failed to send it: {error}"[:2000],
            bulk_run=run,
        )
    finally:
        connections["default"].close()


@dataclass(frozen=True)
class RunResults:
    """A run's state for its page: each agent's result in the run's order, counts, and its state."""

    run: BulkCommandRun
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    state: str  # "running", "done" or "interrupted"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.run.pk),
            "command": self.run.command,
            "total": self.run.total,
            "state": self.state,
            "counts": self.counts,
            "requested_by": self.run.requested_by_name,
            "requested_at": self.run.requested_at.isoformat(),
            "finished_at": self.run.finished_at.isoformat() if self.run.finished_at else None,
            "results": self.rows,
        }


def run_results(run: BulkCommandRun) -> RunResults:
    """Every agent of the run with its outcome ("pending" until its answer): two queries."""
    records = {
        str(record["agent_id"]): record
        for record in run.records.order_by("requested_at").values(
            "agent_id", "agent_name", "outcome", "detail", "requested_at"
        )
    }
    names = dict(Agent.objects.filter(pk__in=run.agent_ids).values_list("id", "name"))
    rows = []
    for pk in run.agent_ids:
        record = records.get(pk)
        name = names.get(uuid.UUID(pk)) or (record or {}).get("agent_name") or "(deleted)"
        rows.append(
            {
                "agent_id": pk,
                "name": name,
                "outcome": record["outcome"] if record else "pending",
                "detail": record["detail"] if record else "",
            }
        )
    counts = dict(Counter(row["outcome"] for row in rows))
    newest = None if run.finished_at else run.records.aggregate(newest=Max("requested_at"))["newest"]
    return RunResults(run, rows, counts, run_state(run, newest))


def run_state(run: BulkCommandRun, newest_result: datetime | None) -> str:
    """ "done", "running", or "interrupted" when no result came for STALLED_AFTER (its process stopped)."""
    if run.finished_at:
        return "done"
    return "interrupted" if timezone.now() - (newest_result or run.requested_at) > STALLED_AFTER else "running"


def recent_runs(user: Any, *, minutes: int = 30, limit: int = 5) -> list[dict[str, Any]]:
    """The runs ``user`` started in the last ``minutes``, newest first, each with its counts by
    outcome (pending: not answered yet) and its state: two queries whatever the runs' size."""
    since = timezone.now() - timedelta(minutes=minutes)
    runs = list(
        BulkCommandRun.objects.filter(requested_by=user, requested_at__gte=since).order_by("-requested_at")[:limit]
    )
    if not runs:
        return []
    tallies = (
        AgentCommandRecord.objects.filter(bulk_run__in=runs)
        .values("bulk_run_id", "outcome")
        .annotate(count=Count("id"), newest=Max("requested_at"))
    )
    counts: dict[uuid.UUID, Counter] = {run.pk: Counter() for run in runs}
    newest: dict[uuid.UUID, datetime] = {}
    for tally in tallies:
        counts[tally["bulk_run_id"]][tally["outcome"]] += tally["count"]
        newest[tally["bulk_run_id"]] = max(tally["newest"], newest.get(tally["bulk_run_id"], tally["newest"]))
    summaries = []
    for run in runs:
        answered = sum(counts[run.pk].values())
        summaries.append(
            {
                "id": str(run.pk),
                "command": run.command,
                "total": run.total,
                "counts": {**counts[run.pk], **({"pending": run.total - answered} if run.total > answered else {})},
                "state": run_state(run, newest.get(run.pk)),
                "requested_at": run.requested_at.isoformat(),
            }
        )
    return summaries
