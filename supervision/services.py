"""Restarting supervision nodes: the one place a restart is decided, recorded and sent.

The tree, the node page and the admin action all call :func:`plan_restart` (what would
happen, for the confirmation) and :func:`request_restart` (do it). The decision follows the
node's policy with the runtime's own SQL rules (``should_restart``, ``calculate_restart_delay``).
The restart rows are committed first, under the nodes' row locks: from then on they are the
restart's claim (another request finds the node "already restarting"). The commands then go to the
runtime through JetStream with no transaction, lock or database connection held while NATS
answers; a command that cannot be published has its row deleted again, so a failed publish leaves
no row behind, and the message id (the restart's id) makes a retried publish harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from mistersmith.jetstream import client as nats
from supervision.events import CONTROL_SUBJECT, RestartCompleted, restart_node_command
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy, SupervisionRestart

PUBLISH_TIMEOUT_SECONDS = 2.0
# command_sequence of a console restart committed and not yet published (JetStream counts from 1):
# like a sent one it is the console's (metrics' origin) and expires unanswered, should the process
# die before publishing; a NULL would make it look like the runtime's own restart, pending forever.
NOT_YET_SENT = 0
DEFAULT_ESCALATION_TIMEOUT_SECONDS = 10


class RestartError(Exception):
    """A restart that cannot even be planned (unknown node) or sent (NATS down); nothing changed."""


class NodeNotFound(RestartError):
    """The node is not there (any more: it may have been deleted while the restart was requested)."""


@dataclass
class PlannedRestart:
    node: SupervisionNode
    attempt: int
    delay_ms: int
    pending: bool  # a restart of this node is already under way: it is skipped


@dataclass
class RestartPlan:
    node: SupervisionNode
    policy: SupervisionPolicy | None
    strategy: str
    failures_in_window: int
    allowed: bool
    refusal: str = ""
    escalate_to: SupervisionNode | None = None
    targets: list[PlannedRestart] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """What the user confirmed: a form posted against another plan is stale."""
        parts = [self.strategy, str(self.allowed), *(f"{t.node.pk}:{t.pending}" for t in self.targets)]
        return "|".join(parts)


@dataclass
class RestartOutcome:
    status: str  # "requested", "already_restarting", "refused", "escalated", "stale"
    message: str
    plan: RestartPlan
    restarts: list[SupervisionRestart] = field(default_factory=list)


def _window_counts(node_ids: list[uuid.UUID], window_seconds: int) -> dict[uuid.UUID, tuple[int, int, bool]]:
    """Per node: failures and restarts inside the window, and whether a restart is pending (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.id,
                   (SELECT count(*) FROM supervision_failures f
                     WHERE f.node_id = n.id AND f.occurred_at > now() - make_interval(secs => %s)),
                   (SELECT count(*) FROM supervision_restarts r
                     WHERE r.node_id = n.id AND r.started_at > now() - make_interval(secs => %s)),
                   EXISTS (SELECT 1 FROM supervision_restarts r WHERE r.node_id = n.id AND r.completed_at IS NULL)
            FROM supervision_nodes n WHERE n.id = ANY(%s)
            """,
            [window_seconds, window_seconds, node_ids],
        )
        return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}


def _delays(policy: SupervisionPolicy, attempts: list[int]) -> list[int]:
    """``calculate_restart_delay`` for several attempts in one round trip."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT calculate_restart_delay(%s, a) FROM unnest(%s::int[]) WITH ORDINALITY AS t(a, i) ORDER BY i",
            [policy.pk, attempts],
        )
        return [row[0] for row in cursor.fetchall()]


def _strategy_targets(node: SupervisionNode, strategy: str) -> list[SupervisionNode]:
    """The nodes a restart of ``node`` restarts: itself; all siblings (OneForAll); or the siblings
    started after it (RestForOne), in start order."""
    if node.parent_id is None or strategy not in ("OneForAll", "RestForOne"):
        return [node]
    siblings = SupervisionNode.objects.filter(parent_id=node.parent_id).exclude(pk=node.pk)
    if strategy == "RestForOne":
        siblings = siblings.filter(Q(created_at__gt=node.created_at) | Q(created_at=node.created_at, id__gt=node.id))
    return [node, *siblings.order_by("created_at", "id")]


def plan_restart(node_pk: uuid.UUID | str) -> RestartPlan:
    """What restarting this node would do now, without changing anything."""
    try:
        node = SupervisionNode.objects.select_related("parent").get(pk=node_pk)
    except (SupervisionNode.DoesNotExist, ValueError) as error:
        raise NodeNotFound(f"There is no supervision node {node_pk} (it may have just been deleted).") from error
    policy = SupervisionPolicy.objects.filter(node=node).first()
    if policy is None:
        return RestartPlan(
            node,
            None,
            "OneForOne",
            0,
            False,
            refusal=f"{node} has no supervision policy: the runtime would not restart it.",
        )
    strategy = policy.supervision_strategy
    targets = _strategy_targets(node, strategy)
    counts = _window_counts([t.pk for t in targets], policy.time_window_seconds)
    failures, _, _ = counts[node.pk]
    plan = RestartPlan(node, policy, strategy, failures, allowed=failures < policy.max_restarts)
    if strategy == "Escalate" or not plan.allowed:
        plan.allowed = False
        plan.refusal = (
            f"{node} escalates every failure to its supervisor (strategy Escalate)."
            if strategy == "Escalate"
            else f"{failures} failures in the last {policy.time_window_seconds} s reach the policy's limit of "
            f"{policy.max_restarts} restarts."
        )
        if (strategy == "Escalate" or policy.escalate_on_limit) and node.parent_id:
            plan.escalate_to = node.parent
        return plan
    attempts = [counts[t.pk][1] + 1 for t in targets]
    delays = _delays(policy, attempts)
    plan.targets = [
        PlannedRestart(t, attempt, delay, counts[t.pk][2])
        for t, attempt, delay in zip(targets, attempts, delays, strict=True)
    ]
    return plan


def _lock(node: SupervisionNode, targets: list[SupervisionNode]) -> None:
    """Row locks in one order (parent first, then targets by id) so concurrent requests queue, not deadlock."""
    ids = sorted({t.pk for t in targets} | {node.pk})
    if node.parent_id:
        list(SupervisionNode.objects.select_for_update().filter(pk=node.parent_id).values_list("pk", flat=True))
    list(SupervisionNode.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))


def _log(user: Any, node: SupervisionNode, message: str) -> None:
    if user is not None and user.pk is not None:
        LogEntry.objects.log_actions(
            user.pk, SupervisionNode.objects.filter(pk=node.pk), CHANGE, change_message=message, single_object=True
        )


def _escalate(plan: RestartPlan, user: Any) -> str:
    """Record the escalation on the node's newest failure in the window and in the admin history."""
    parent = plan.escalate_to
    latest = (
        SupervisionFailure.objects.filter(node=plan.node, escalated_to_parent=False).order_by("-occurred_at").first()
    )
    if latest is not None:
        latest.escalated_to_parent = True
        latest.recovery_action = f"escalated to {parent}"
        latest.save(update_fields=["escalated_to_parent", "recovery_action"])
    message = f"Restart refused: {plan.refusal} Escalated to {parent}."
    _log(user, plan.node, message)
    return message


def request_restart(
    node_pk: uuid.UUID | str, *, user: Any, reason: str = "", confirmed_fingerprint: str | None = None
) -> RestartOutcome:
    """Restart a node (and the siblings its strategy names) now, or say why not.

    Raises :class:`RestartError` when NATS cannot take the command; the transaction is then
    rolled back and no restart row remains.
    """
    reason = reason.replace("\x00", "").strip()[:1000]  # free text; PostgreSQL refuses NUL in it
    with transaction.atomic():
        plan = plan_restart(node_pk)
        _lock(plan.node, [t.node for t in plan.targets])
        plan = plan_restart(node_pk)  # again, under the locks: another request may have just won
        if confirmed_fingerprint is not None and confirmed_fingerprint != plan.fingerprint:
            return RestartOutcome("stale", "The situation changed since you looked: review the restart again.", plan)
        if not plan.allowed:
            if plan.escalate_to is not None:
                return RestartOutcome("escalated", _escalate(plan, user), plan)
            _log(user, plan.node, f"Restart refused: {plan.refusal}")
            return RestartOutcome("refused", plan.refusal, plan)
        if plan.targets[0].pending:
            return RestartOutcome("already_restarting", f"{plan.node} is already restarting.", plan)
        recorded = [_record(target, user, reason, plan.node) for target in plan.targets if not target.pending]
    restarts = _send(recorded, user)
    names = ", ".join(str(r.node) for r in restarts)
    return RestartOutcome("requested", f"Restart requested for {names}.", plan, restarts)


@dataclass(frozen=True)
class _Recorded:
    """A committed restart row and the RestartNode command that is still to be sent for it."""

    restart: SupervisionRestart
    command: dict[str, Any]
    log_message: str


def _record(target: PlannedRestart, user: Any, reason: str, initiator: SupervisionNode) -> _Recorded:
    why = reason or "requested from the console"
    if target.node.pk != initiator.pk:
        why = f"{why} (with {initiator} by strategy)"
    restart = SupervisionRestart.objects.create(
        node=target.node,
        restart_attempt_number=target.attempt,
        restart_delay_ms=target.delay_ms,
        requested_by=user if user is not None and user.pk is not None else None,
        reason=why,
        command_sequence=NOT_YET_SENT,
    )
    command = restart_node_command(
        restart_id=restart.pk,
        node_id=target.node.pk,
        node_name=target.node.node_id,
        attempt=target.attempt,
        delay_ms=target.delay_ms,
        requested_by=getattr(user, "username", "") or "console",
        reason=why,
    )
    log_message = f"Restart requested: attempt {target.attempt}, delay {target.delay_ms} ms. {why}"
    return _Recorded(restart, command, log_message)


def _send(recorded: list[_Recorded], user: Any) -> list[SupervisionRestart]:
    """Publish each committed restart's command, outside any transaction. The first that NATS does
    not take ends the loop: its row and the rows after it are deleted (nothing of them reached the
    runtime), and RestartError says which restarts were sent before it."""
    sent: list[SupervisionRestart] = []
    for index, item in enumerate(recorded):
        restart = item.restart
        try:
            ack = nats.connection().publish(
                CONTROL_SUBJECT, item.command, msg_id=str(restart.pk), timeout=PUBLISH_TIMEOUT_SECONDS
            )
        except nats.NatsUnavailable as error:
            SupervisionRestart.objects.filter(pk__in=[later.restart.pk for later in recorded[index:]]).delete()
            message = f"The restart was not sent: {error} Nothing was recorded; try again."
            if sent:
                names = ", ".join(str(done.node) for done in sent)
                message = f"The restart of {restart.node} was not sent: {error} Already sent: {names}."
            raise RestartError(message) from error
        restart.command_sequence = ack.seq
        restart.save(update_fields=["command_sequence"])
        _log(user, restart.node, item.log_message)
        sent.append(restart)
    return sent


def complete_restart(answer: RestartCompleted) -> str:
    """Apply a RestartCompleted answer once: "completed", "duplicate" or "unknown"."""
    updated = SupervisionRestart.objects.filter(pk=answer.restart_id, completed_at__isnull=True).update(
        completed_at=timezone.now(),
        success=answer.success,
        error_message=answer.error_message,
        new_instance_id=answer.new_instance_id,
    )
    if updated:
        return "completed"
    return "duplicate" if SupervisionRestart.objects.filter(pk=answer.restart_id).exists() else "unknown"


# A restart's outcome as the console names it, from its row alone (an SQL expression over a row of
# supervision_restarts): pending until it completes, then succeeded, timed out (marked so by
# expire_overdue_restarts below) or failed. The dashboard's charts and the metrics use it.
RESTART_OUTCOMES = ("succeeded", "failed", "timed_out", "pending")
RESTART_OUTCOME_SQL = """CASE WHEN completed_at IS NULL THEN 'pending'
                WHEN success THEN 'succeeded'
                WHEN error_message LIKE 'Timed out:%%' THEN 'timed_out'
                ELSE 'failed' END"""


def expire_overdue_restarts() -> int:
    """Mark the console's restarts that got no answer within their delay plus the escalation timeout."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE supervision_restarts r
               SET completed_at = now(), success = false,
                   error_message = format(
                       'Timed out: no RestartCompleted within %%s ms (delay %%s ms + escalation timeout %%s s).',
                       r.restart_delay_ms + 1000 * COALESCE(p.escalation_timeout_seconds, %s),
                       r.restart_delay_ms, COALESCE(p.escalation_timeout_seconds, %s))
              FROM supervision_restarts r2
              LEFT JOIN supervision_policies p ON p.node_id = r2.node_id
             WHERE r.id = r2.id AND r.completed_at IS NULL AND r.command_sequence IS NOT NULL
               AND r.started_at + make_interval(secs => r.restart_delay_ms / 1000.0
                   + COALESCE(p.escalation_timeout_seconds, %s)) < now()
            """,
            [DEFAULT_ESCALATION_TIMEOUT_SECONDS] * 3,
        )
        return cursor.rowcount
