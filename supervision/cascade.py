"""What deleting supervision nodes takes with it, and the deletion itself, logged node by node.

PostgreSQL cascades a node's deletion (ON DELETE CASCADE on parent_node_id, and on the node_id
of policies, failures, restarts and child states), so one DELETE can remove a subtree of
10,000 nodes and their history. Django's collector sees none of it (the models say DO_NOTHING),
so the admin's own confirmation listed one node. Here the cascade is read the way the database
will follow it: one recursive query for the subtree, aggregates for the rest. The number of
queries is the same for one node or 10,000; only the first names are read.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction

from supervision import history
from supervision.models import SupervisionNode

FIRST_NAMES = 20  # descendant names shown on the confirmation page
LOG_BATCH = 1000  # LogEntry rows per INSERT
OBJECT_REPR_LENGTH = 200  # LogEntry.object_repr's max_length

# The selected nodes (roots) and every node below them, cycle-safe (UNION drops a node seen twice).
SUBTREE_CTE = """
WITH RECURSIVE subtree(root, id) AS (
    SELECT n.id, n.id FROM supervision_nodes n WHERE n.id = ANY(%(roots)s::uuid[])
    UNION
    SELECT s.root, c.id FROM supervision_nodes c JOIN subtree s ON c.parent_node_id = s.id
),
doomed AS (SELECT DISTINCT id FROM subtree),
doomed_failures AS (SELECT f.id FROM supervision_failures f WHERE f.node_id IN (SELECT id FROM doomed))
"""

# Restarts go with their node and with their failure (failure_id ON DELETE CASCADE), which may
# belong to another node; child states elsewhere that point at a doomed node are only unlinked.
TOTALS_SQL = (
    SUBTREE_CTE
    + """
SELECT
    (SELECT count(*) FROM doomed) AS nodes,
    (SELECT count(*) FROM supervision_policies p WHERE p.node_id IN (SELECT id FROM doomed)) AS policies,
    (SELECT count(*) FROM doomed_failures) AS failures,
    (SELECT count(*) FROM supervision_restarts r
      WHERE r.node_id IN (SELECT id FROM doomed) OR r.failure_id IN (SELECT id FROM doomed_failures)) AS restarts,
    (SELECT count(*) FROM supervision_child_states cs WHERE cs.node_id IN (SELECT id FROM doomed)) AS child_states
"""
)

PER_ROOT_SQL = (
    SUBTREE_CTE
    + """
SELECT root, count(*) - 1 AS descendants FROM subtree GROUP BY root
"""
)

FIRST_DESCENDANTS_SQL = (
    SUBTREE_CTE
    + """
SELECT n.node_id FROM supervision_nodes n
WHERE n.id IN (SELECT id FROM doomed) AND NOT n.id = ANY(%(roots)s::uuid[])
ORDER BY n.node_id LIMIT %(limit)s
"""
)

# Locks the whole subtree (a child cannot be added under a locked node: its foreign key check
# needs a share lock on the parent) and returns every node the DELETE will remove.
LOCK_SUBTREE_SQL = (
    SUBTREE_CTE
    + """
SELECT n.id, n.node_id FROM supervision_nodes n WHERE n.id IN (SELECT id FROM doomed) ORDER BY n.node_id FOR UPDATE
"""
)


@dataclass
class RootCascade:
    """One selected node and how many nodes lie below it."""

    node: SupervisionNode
    descendants: int

    @property
    def needs_typed_name(self) -> bool:
        return self.descendants > 0


@dataclass
class Cascade:
    """Everything a deletion of ``roots`` removes: counts, and the first descendant names."""

    roots: list[RootCascade]
    nodes: int
    policies: int
    failures: int
    restarts: int
    child_states: int
    first_descendants: list[str] = field(default_factory=list)

    @property
    def descendants(self) -> int:
        return self.nodes - len(self.roots)

    @property
    def more_descendants(self) -> int:
        return max(0, self.descendants - len(self.first_descendants))


class SubtreeChanged(Exception):
    """The subtree is not the one the user confirmed; nothing was deleted."""


def cascade_of(nodes: Sequence[SupervisionNode]) -> Cascade:
    """The cascade of deleting ``nodes``, in three queries whatever the subtree's size."""
    params = {"roots": [str(node.pk) for node in nodes], "limit": FIRST_NAMES}
    with connection.cursor() as cursor:
        cursor.execute(TOTALS_SQL, params)
        nodes_count, policies, failures, restarts, child_states = cursor.fetchone()
        cursor.execute(PER_ROOT_SQL, params)
        below = dict(cursor.fetchall())
        cursor.execute(FIRST_DESCENDANTS_SQL, params)
        first = [row[0] for row in cursor.fetchall()]
    return Cascade(
        roots=[RootCascade(node, below.get(node.pk, 0)) for node in nodes],
        nodes=nodes_count,
        policies=policies,
        failures=failures,
        restarts=restarts,
        child_states=child_states,
        first_descendants=first,
    )


def delete_subtrees(nodes: Sequence[SupervisionNode], *, user_id: int, expected_nodes: int | None = None) -> int:
    """Delete ``nodes`` with everything below them, logging a DELETION entry in the admin
    history for each node removed (the selected ones and every descendant). Returns how many
    nodes were deleted.

    ``expected_nodes``: the node count the user was shown; when the locked subtree holds another
    number, :class:`SubtreeChanged` is raised and nothing is deleted.
    """
    roots = [str(node.pk) for node in nodes]
    with transaction.atomic():
        history.record_as(get_user_model().objects.filter(pk=user_id).first())
        with connection.cursor() as cursor:
            cursor.execute(LOCK_SUBTREE_SQL, {"roots": roots})
            doomed: list[tuple[uuid.UUID, str]] = cursor.fetchall()
        if expected_nodes is not None and len(doomed) != expected_nodes:
            raise SubtreeChanged(
                f"The nodes to delete changed since the page was shown: {len(doomed)} now, "
                f"{expected_nodes} then. Check the list again; nothing was deleted."
            )
        selected = set(roots)
        content_type = ContentType.objects.get_for_model(SupervisionNode)
        LogEntry.objects.bulk_create(
            (
                LogEntry(
                    user_id=user_id,
                    content_type=content_type,
                    object_id=str(pk),
                    object_repr=name[:OBJECT_REPR_LENGTH],
                    action_flag=DELETION,
                    change_message="" if str(pk) in selected else "Deleted with its ancestor (subtree deletion).",
                )
                for pk, name in doomed
            ),
            batch_size=LOG_BATCH,
        )
        with connection.cursor() as cursor:  # the database cascades to the rest
            cursor.execute("DELETE FROM supervision_nodes WHERE id = ANY(%s::uuid[])", [roots])
    return len(doomed)
