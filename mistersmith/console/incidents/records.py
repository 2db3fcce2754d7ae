"""The supervision records that followed a failure: restarts and the parent's failures.

Each is one bounded statement on an index, whatever the tables hold:

- restarts: the runtime's own for this failure (``failure_id``, supervision_restarts_failure_idx),
  and every restart of the node, or under OneForAll and RestForOne of its siblings (which its
  strategy restarts with it), that started between the failure and the end of the story
  (supervision_restarts_node_time_idx, one range per node): the console's restart requests carry no
  failure id (supervision/services.py), so they are found by node and time;
- the parent's failures from the failure on (supervision_failures_node_time_idx): where an
  escalation went.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db.models import Q

from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart

RESTART_LIMIT = 50
PARENT_FAILURE_LIMIT = 5
STRATEGIES_WITH_SIBLINGS = ("OneForAll", "RestForOne")


def _restarted_nodes(row: dict[str, Any]) -> Any:
    """The node and, under OneForAll or RestForOne, its siblings (RestForOne restarts only those
    started after it, a subset: the time range keeps the rest out), as a subquery."""
    nodes = SupervisionNode.objects.filter(pk=row["node_id"])
    if row["strategy"] in STRATEGIES_WITH_SIBLINGS and row["parent_id"] is not None:
        nodes = SupervisionNode.objects.filter(Q(pk=row["node_id"]) | Q(parent_id=row["parent_id"]))
    return nodes.values("pk")


def restarts_after(row: dict[str, Any], until: dt.datetime) -> list[SupervisionRestart]:
    """Up to RESTART_LIMIT + 1 restarts of this failure (oldest first; one more than shown says there are more)."""
    during = Q(node_id__in=_restarted_nodes(row), started_at__gte=row["occurred_at"], started_at__lt=until)
    restarts = SupervisionRestart.objects.filter(Q(failure_id=row["id"]) | during)
    return list(restarts.select_related("node", "requested_by").order_by("started_at", "id")[: RESTART_LIMIT + 1])


def parent_failures_after(parent_id: uuid.UUID, since: dt.datetime, until: dt.datetime) -> list[SupervisionFailure]:
    """The parent's first failures from ``since`` until ``until`` (the escalation's trace there)."""
    failures = SupervisionFailure.objects.filter(node_id=parent_id, occurred_at__gte=since, occurred_at__lt=until)
    return list(failures.order_by("occurred_at", "id")[:PARENT_FAILURE_LIMIT])
