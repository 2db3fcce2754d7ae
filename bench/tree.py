"""The supervision tree page on trees of 10,000 and 100,000 nodes (5 levels).

Figures per tree: the first render (the page scoped to the tree's root, ``?root=``, since the
bench database holds other benchmarks' trees too), the same with a deep link, one expand of a
supervisor with 1,000 workers, a search, a node's panel, and the runtime's own
``get_supervision_tree`` on that root and on NULL (every tree in the database), with the page's
time as a ratio to the former.

Targets (issue): first render at most 5 queries and under 250 ms; an expand at most 3 queries
and under 50 ms. The admin's session and user lookups are two of the queries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from bench.support import admin_client, bench_database, measure

TREES = {"tree10k": 10_000, "tree100k": 100_000}
FAILURES_PER_NODE = 10
WIDE_CHILDREN = 1_000
PAGE_TARGET = {"median_ms": 250, "queries": 5}
EXPAND_TARGET = {"median_ms": 50, "queries": 3}


def ensure_tree(prefix: str, nodes: int) -> None:
    """Seed the tree once (kept between runs), plus a supervisor with 1,000 workers under its root."""
    from django.db import connection, transaction

    from mistersmith.simulator import demo
    from supervision.models import SupervisionNode

    if SupervisionNode.objects.filter(node_id=f"{prefix}-root").exists():
        return
    started = time.perf_counter()
    with transaction.atomic():  # the tree and its wide supervisor, or nothing
        demo.seed(prefix=prefix, nodes=nodes, levels=5, failures=nodes * FAILURES_PER_NODE, hive=False)
        add_wide_supervisor(prefix)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"# seeded {prefix}: {nodes} nodes in {time.perf_counter() - started:.0f} s", flush=True)


def add_wide_supervisor(prefix: str) -> None:
    """``<prefix>-wide``: an AgentSupervisor under the root with ``WIDE_CHILDREN`` workers, each
    with an agent, a policy, a child state and a few recent failures."""
    from django.db import connection

    from mistersmith.simulator.demo import copy_rows
    from supervision.models import SupervisionNode

    root = SupervisionNode.objects.get(node_id=f"{prefix}-root")
    wide_id, wide_agent = uuid.uuid4(), uuid.uuid4()
    workers = [(uuid.uuid4(), uuid.uuid4(), f"{prefix}-wide-worker-{i:04d}") for i in range(WIDE_CHILDREN)]
    agents = [(wide_agent, f"{prefix}-wide-agent")] + [(agent, f"{name}-agent") for _, agent, name in workers]
    copy_rows("agents", ["id", "name", "agent_type", "status"], ((a, name, "claude", "Running") for a, name in agents))
    node_columns = ["id", "node_id", "node_type", "node_type_detail", "status", "parent_node_id", "agent_id"]
    copy_rows(
        "supervision_nodes",
        node_columns,
        [(wide_id, f"{prefix}-wide", "AgentSupervisor", "pool", "active", root.pk, wide_agent)]
        + [(pk, name, "Worker", "claude-cli", "active", wide_id, agent) for pk, agent, name in workers],
    )
    policy_columns = [
        "node_id",
        "supervision_strategy",
        "max_restarts",
        "time_window_seconds",
        "backoff_strategy",
        "backoff_factor",
        "min_restart_delay_ms",
        "max_restart_delay_ms",
    ]
    copy_rows(
        "supervision_policies",
        policy_columns,
        ((pk, "OneForOne", 5, 60, "Exponential", "2.00", 100, 30000) for pk in [wide_id, *(w[0] for w in workers)]),
    )
    copy_rows(
        "supervision_child_states",
        ["node_id", "child_id", "child_node_id", "state"],
        ((wide_id, name, pk, "Running" if i % 10 else "Failed") for i, (pk, _, name) in enumerate(workers)),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO supervision_failures (node_id, failure_reason, failure_detail, occurred_at)
            SELECT n.id, 'Crash', 'process exited with status 137', now() - g * interval '17 seconds'
            FROM supervision_nodes n CROSS JOIN generate_series(1, 5) g WHERE n.parent_node_id = %s
            """,
            [wide_id],
        )


def runtime_tree(root: uuid.UUID | None) -> int:
    """What the runtime reads: ``SELECT * FROM get_supervision_tree(...)``, every row fetched."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM get_supervision_tree(%s)", [root])
        return len(cursor.fetchall())


def figures_for(client, prefix: str, nodes: int) -> Iterator[dict]:
    from django.urls import reverse

    from supervision.models import SupervisionNode

    root = SupervisionNode.objects.get(node_id=f"{prefix}-root")
    wide = SupervisionNode.objects.get(node_id=f"{prefix}-wide")
    deep = SupervisionNode.objects.filter(node_id__startswith=f"{prefix}-worker").order_by("node_id").last()

    def get(url: str, params: dict | None = None):
        def action():
            response = client.get(url, params or {})
            assert response.status_code == 200, response.status_code
            return response

        return action

    tree_url = reverse("supervision:tree")
    runtime = measure(lambda: runtime_tree(root.pk))
    runtime_all = measure(lambda: runtime_tree(None))
    page = measure(get(tree_url, {"root": str(root.pk)}))
    common = {"tree": prefix, "nodes": nodes + WIDE_CHILDREN + 1}
    yield {
        "figure": "runtime_get_supervision_tree",
        **common,
        "rows": runtime_tree(root.pk),
        **runtime,
        "null_rows": runtime_tree(None),
        "null_median_ms": runtime_all["median_ms"],
    }
    yield {
        "figure": "tree_page_first_render",
        **common,
        **page,
        "ratio_to_runtime_tree": round(page["median_ms"] / runtime["median_ms"], 3),
        "ratio_to_runtime_tree_null": round(page["median_ms"] / runtime_all["median_ms"], 3),
        "target": PAGE_TARGET,
    }
    deep_link = measure(get(tree_url, {"root": str(root.pk), "node": str(deep.pk)}))
    yield {"figure": "tree_page_deep_link", **common, **deep_link, "target": PAGE_TARGET}
    expand = measure(get(reverse("supervision:tree_children"), {"parent": str(wide.pk)}))
    yield {"figure": "tree_expand_1000_children", **common, **expand, "target": EXPAND_TARGET}
    more = measure(
        get(reverse("supervision:tree_children"), {"parent": str(wide.pk), "after": f"{prefix}-wide-worker-0800"})
    )
    yield {"figure": "tree_expand_1000_children_last_page", **common, **more, "target": EXPAND_TARGET}
    search = measure(get(reverse("supervision:tree_search"), {"q": deep.node_id[-8:].upper()}))
    yield {"figure": "tree_search", **common, **search}
    panel = measure(get(reverse("supervision:tree_node", args=[wide.pk])))
    yield {"figure": "tree_node_panel", **common, **panel}


def run() -> Iterator[dict]:
    with bench_database():
        for prefix, nodes in TREES.items():
            ensure_tree(prefix, nodes)
        client = admin_client()
        for prefix, nodes in TREES.items():
            yield from figures_for(client, prefix, nodes)
