"""Policy backtest (issue 15, item 2) on the 100,000-node tree with 1,000,000 failures (the tree
bench's ``tree100k``, seeded once and kept).

Figures, each a replay of the last 1, 7 and 30 days (one statement: the 30-day read bounds it):

- the saved policy of the node with the most failures (among nodes with a policy);
- unsaved values for the same node (staged in a rolled-back savepoint, then replayed);
- the endpoint the policy form asks, whole (both of the above, the lint, the JSON);
- the same three with that node given 200,000 more failures over 30 days, inside a rolled-back
  transaction: the replay reads at most REPLAY_CAP of them, so the time stays bounded.

Target (issue 15): a 30-day backtest under 2 s.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.support import admin_client, bench_database, measure
from bench.tree import ensure_tree

PREFIX, NODES = "tree100k", 100_000
TARGET = {"median_ms": 2000}
EXTRA_FAILURES = 200_000


def _busiest_policy() -> object:
    from django.db import connection

    from supervision.models import SupervisionPolicy

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT f.node_id FROM supervision_failures f JOIN supervision_policies p ON p.node_id = f.node_id "
            "GROUP BY f.node_id ORDER BY count(*) DESC LIMIT 1"
        )
        (node_pk,) = cursor.fetchone()
    return SupervisionPolicy.objects.select_related("node").get(node_id=node_pk)


def _figures(policy: object, label: str) -> Iterator[dict]:
    from django.db import connection
    from django.urls import reverse

    from supervision import backtest

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM supervision_nodes), (SELECT count(*) FROM supervision_failures), "
            "(SELECT count(*) FROM supervision_failures WHERE node_id = %s "
            "AND occurred_at > now() - interval '30 days')",
            [policy.node_id],
        )
        nodes, failures, node_failures = cursor.fetchone()
    common = {"nodes": nodes, "failures": failures, "node_failures_30d": node_failures, "history": label}
    edited = {**backtest.settings_of(policy), "max_restarts": policy.max_restarts + 5, "backoff_strategy": "Linear"}
    saved = backtest.backtest_saved(policy)
    yield {
        "figure": "backtest_saved_policy_30d",
        **common,
        **measure(lambda: backtest.backtest_saved(policy)),
        "replayed": saved.period(30).failures,
        "target": TARGET,
    }
    yield {
        "figure": "backtest_unsaved_values_30d",
        **common,
        **measure(lambda: backtest.backtest_settings(policy.node, edited)),
        "target": TARGET,
    }
    client = admin_client()
    query = {"node": str(policy.node_id), **{k: v for k, v in edited.items() if k != "escalate_on_error_types"}}
    url = reverse("supervision:policy_backtest")

    def ask() -> None:
        response = client.get(url, query)
        assert response.status_code == 200, response.content[:300]

    yield {"figure": "backtest_endpoint_saved_and_edited", **common, **measure(ask), "target": TARGET}


def run() -> Iterator[dict]:
    from django.db import connection, transaction

    with bench_database():
        ensure_tree(PREFIX, NODES)
        policy = _busiest_policy()
        yield from _figures(policy, "as seeded")
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, occurred_at) "
                    "SELECT %s, 'Crash', 'bench', now() - random() * interval '30 days' "
                    "FROM generate_series(1, %s)",
                    [policy.node_id, EXTRA_FAILURES],
                )
                cursor.execute("ANALYZE supervision_failures")
            yield from _figures(policy, f"+{EXTRA_FAILURES:,} failures on that node (rolled back)")
            transaction.set_rollback(True)
