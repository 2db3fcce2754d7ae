"""An incident page (mistersmith/console/incidents) on the 100,000-node tree with 1,000,000 failures
(the tree bench's ``tree100k``, seeded once and kept).

The failure is the newest of the node with the most failures (the seed spreads them: 10 a node), and,
inside a rolled-back transaction, a crowded one: a worker of the 1,000-worker supervisor under
OneForAll with 10,000 failures in its window and every sibling restarted right after (its decision
counts the whole window, its restarts are searched among 1,000 nodes). The page and its JSON export are timed
as a superuser sees them (every part read, the agent's events from AGENT_EVENTS included), with the
query count of one render.

Target (issue 15): an incident page under 300 ms; the queries a constant (the session and the
user, the failure with its decision, the restarts, the parent's failures when it escalated).
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.support import admin_client, bench_database, measure
from bench.tree import ensure_tree

PREFIX, NODES = "tree100k", 100_000
TARGET = {"median_ms": 300, "queries": 5}


def _busiest_failures() -> dict[str, object]:
    """The newest failure of the node with the most failures, and the newest escalated one of the
    node with the most escalations (found once, outside the timing)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH busiest AS (
                SELECT node_id, count(*) AS n FROM supervision_failures GROUP BY node_id ORDER BY n DESC LIMIT 1
            )
            SELECT f.id, b.n FROM busiest b
            JOIN LATERAL (
                SELECT id FROM supervision_failures WHERE node_id = b.node_id ORDER BY occurred_at DESC LIMIT 1
            ) f ON true
            """
        )
        newest, count = cursor.fetchone()
        cursor.execute(
            "SELECT id FROM supervision_failures WHERE escalated_to_parent AND node_id = "
            "(SELECT node_id FROM supervision_failures WHERE escalated_to_parent "
            " GROUP BY node_id ORDER BY count(*) DESC LIMIT 1) ORDER BY occurred_at DESC LIMIT 1"
        )
        escalated = cursor.fetchone()
        cursor.execute("SELECT (SELECT count(*) FROM supervision_nodes), (SELECT count(*) FROM supervision_failures)")
        nodes, failures = cursor.fetchone()
    return {
        "newest": newest,
        "node_failures": count,
        "escalated": escalated[0] if escalated else None,
        "nodes": nodes,
        "failures": failures,
    }


def run() -> Iterator[dict]:
    from django.db import transaction
    from django.urls import reverse

    with bench_database():
        ensure_tree(PREFIX, NODES)
        found = _busiest_failures()
        client = admin_client()
        common = {"nodes": found["nodes"], "failures": found["failures"], "node_failures": found["node_failures"]}

        def get(url: str):
            def action():
                response = client.get(url)
                assert response.status_code == 200, response.status_code
                return response

            return action

        cases = {
            "incident_page": ("incidents:page", found["newest"]),
            "incident_json": ("incidents:json", found["newest"]),
        }
        if found["escalated"] is not None:
            cases["incident_page_escalated"] = ("incidents:page", found["escalated"])
        for figure, (name, failure_id) in cases.items():
            url = reverse(name, args=[failure_id])
            yield {"figure": figure, **common, "failure": str(failure_id), **measure(get(url)), "target": TARGET}
        with transaction.atomic():  # the worst story, rolled back after
            failure_id = _crowded_story()
            url = reverse("incidents:page", args=[failure_id])
            yield {"figure": "incident_page_crowded", **common, **CROWDED, **measure(get(url)), "target": TARGET}
            transaction.set_rollback(True)


# A worker of the wide supervisor (1,000 siblings) under OneForAll, with this many failures inside
# its window before the one shown, and every sibling restarted right after it.
CROWDED = {"window_failures": 10_000, "sibling_restarts": 1_000}


def _crowded_story() -> object:
    """The failure whose story reads the most: a full window counted, the restarts of 1,000 siblings
    searched (50 shown), escalation rules evaluated; returns its id."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.id, n.parent_node_id FROM supervision_nodes n WHERE n.node_id = %s",
            [f"{PREFIX}-wide-worker-0500"],
        )
        node, parent = cursor.fetchone()
        cursor.execute(
            "UPDATE supervision_policies SET supervision_strategy = 'OneForAll', max_restarts = 100000, "
            "time_window_seconds = 3600 WHERE node_id = %s",
            [node],
        )
        cursor.execute(
            """
            INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, occurred_at)
            SELECT %s, 'Crash', 'crowded', now() - interval '10 minutes' - g * interval '100 milliseconds'
            FROM generate_series(1, %s) g
            """,
            [node, CROWDED["window_failures"]],
        )
        cursor.execute(
            "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, occurred_at, "
            "restart_attempted) VALUES (%s, 'Crash', 'the one shown', now() - interval '10 minutes', true) "
            "RETURNING id",
            [node],
        )
        failure = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO supervision_restarts (node_id, restart_attempt_number, restart_delay_ms, started_at,
                completed_at, success)
            SELECT id, 1, 100, now() - interval '10 minutes' + interval '1 second',
                   now() - interval '10 minutes' + interval '2 seconds', true
            FROM supervision_nodes WHERE parent_node_id = %s
            """,
            [parent],
        )
    return failure
