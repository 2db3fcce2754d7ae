"""The supervision tree at a past moment (``?at=``), on the 100,000-node tree with 1,000,000
failures (the tree bench's ``tree100k``, seeded once and kept), with three versions of every node
in the history.

History (seeded once, set-based, straight into supervision_node_history): every node of the tree
was ``active`` from 2 days ago to 1 day ago, then one in ten ``failed`` (the others ``inactive``)
until 1 hour ago, then as it is now: 3 versions per node, about 303,000 rows.

Figures: the first render at a moment inside the middle versions (12 hours ago), the same with a
deep link to a worker at the bottom of the tree, one expand of the supervisor with 1,000 workers
at that moment, a node's panel at that moment, and the diff of two moments (1 day 1 hour ago
against 30 minutes ago: every node changed, capped to the first 1,000 compared).

Target (issue 15): the tree at a past moment, first render under 500 ms.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

from bench.support import admin_client, bench_database, measure
from bench.tree import ensure_tree

PREFIX, NODES = "tree100k", 100_000
FIRST_RENDER_TARGET = {"median_ms": 500}
SEED_MARK = "bench"  # the change label of the seeded versions: seeded once

# Every node of the tree (its open version) gets two older versions; the open one starts 1 h ago.
SEED_SQL = """
WITH tree AS (
    SELECT h.* FROM supervision_node_history h
    WHERE h.valid_to IS NULL AND (h.name LIKE %(prefix)s)
),
moved AS (
    UPDATE supervision_node_history h SET valid_from = now() - interval '1 hour'
    FROM tree WHERE h.id = tree.id
    RETURNING h.id
)
INSERT INTO supervision_node_history
    (node, name, node_type, node_type_detail, status, parent_node_id, agent_id, policy, valid_from, valid_to, change)
SELECT t.node, t.name, t.node_type, t.node_type_detail, v.status::node_status, t.parent_node_id, t.agent_id,
       t.policy, v.valid_from, v.valid_to, %(mark)s
FROM tree t CROSS JOIN LATERAL (VALUES
    ('active', now() - interval '2 days', now() - interval '1 day'),
    (CASE WHEN abs(hashtext(t.name)) %% 10 = 0 THEN 'failed' ELSE 'inactive' END,
     now() - interval '1 day', now() - interval '1 hour')
) AS v(status, valid_from, valid_to)
"""


def ensure_history(prefix: str) -> None:
    """Seed the tree's older versions once (kept between runs, like the tree)."""
    from django.db import connection, transaction

    from supervision.models import SupervisionNodeHistory

    if SupervisionNodeHistory.objects.filter(change=SEED_MARK, name__startswith=prefix).exists():
        return
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SEED_SQL, {"prefix": f"{prefix}-%", "mark": SEED_MARK})
        rows = cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE supervision_node_history")
    print(f"# seeded {rows} older versions of {prefix} in {time.perf_counter() - started:.0f} s", flush=True)


def run() -> Iterator[dict]:
    from django.db import connection
    from django.urls import reverse
    from django.utils import timezone

    from supervision.models import SupervisionNode
    from supervision.views.moments import iso

    with bench_database():
        ensure_tree(PREFIX, NODES)
        ensure_history(PREFIX)
        client = admin_client()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM supervision_nodes), (SELECT count(*) FROM supervision_failures), "
                "(SELECT count(*) FROM supervision_node_history)"
            )
            nodes, failures, versions = cursor.fetchone()
        common = {"tree": PREFIX, "nodes": nodes, "failures": failures, "history_rows": versions}
        at = iso(timezone.now() - timedelta(hours=12))
        wide = SupervisionNode.objects.get(node_id=f"{PREFIX}-wide")
        deep = SupervisionNode.objects.filter(node_id__startswith=f"{PREFIX}-worker").order_by("node_id").last()
        tree_url = reverse("supervision:tree")

        def get(url: str, params: dict):
            def action():
                response = client.get(url, params)
                assert response.status_code == 200, response.status_code
                return response

            return action

        page = measure(get(tree_url, {"at": at}))
        yield {"figure": "past_tree_first_render", **common, "at": "12 h ago", **page, "target": FIRST_RENDER_TARGET}
        deep_link = measure(get(tree_url, {"at": at, "node": str(deep.pk)}))
        yield {"figure": "past_tree_deep_link", **common, **deep_link, "target": FIRST_RENDER_TARGET}
        expand = measure(get(reverse("supervision:tree_children"), {"parent": str(wide.pk), "at": at}))
        yield {"figure": "past_tree_expand_1000_children", **common, **expand}
        panel = measure(get(reverse("supervision:tree_node", args=[wide.pk]), {"at": at}))
        yield {"figure": "past_tree_node_panel", **common, **panel}
        before, after = iso(timezone.now() - timedelta(days=1, hours=1)), iso(timezone.now() - timedelta(minutes=30))
        diff = measure(get(tree_url, {"at": before, "compare": after}), repeat=5)
        yield {"figure": "past_tree_diff_of_two_moments", **common, "span": "1 day", **diff}
