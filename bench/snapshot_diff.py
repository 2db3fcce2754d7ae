"""The snapshot diff (mistersmith/operations/snapshots/diff.py) of a snapshot with now, on the
100,000-node tree with 1,000,000 failures (the tree bench's ``tree100k``, seeded once and kept).

Figures:

- ``snapshot_diff_now``: the service in this process, the tree unchanged since the snapshot;
- ``snapshot_diff_now_changed``: the same after 1,000 status changes, 1,000 policy edits and 1,000
  nodes added (inside a transaction rolled back afterwards), the diff checked to find exactly them;
- ``diff_state_command``: ``manage.py diff_state <snapshot>`` in a process of its own: wall time
  and peak RSS (the whole command: Django's start, both trees, the counts, the printing).

No target in the issue; the page runs the same service in the request, so these are what a
superuser waits for. The failures member (by far the largest) is never read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.snapshots import timed
from bench.support import bench_database, machine, measure
from bench.tree import ensure_tree

PREFIX, NODES = "tree100k", 100_000
CHANGES = 1_000


def _change_the_tree() -> None:
    """Statuses, policies and new nodes, a thousand each, in the caller's transaction."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE supervision_nodes "
            "SET status = (CASE WHEN status = 'failed' THEN 'active' ELSE 'failed' END)::node_status "
            "WHERE id IN (SELECT id FROM supervision_nodes ORDER BY id LIMIT %s)",
            [CHANGES],
        )
        cursor.execute(
            "UPDATE supervision_policies SET max_restarts = max_restarts + 1 "
            "WHERE id IN (SELECT id FROM supervision_policies ORDER BY id DESC LIMIT %s)",
            [CHANGES],
        )
        cursor.execute(
            "INSERT INTO supervision_nodes (node_id, node_type, node_type_detail, parent_node_id) "
            "SELECT 'snapdiff-added-' || n, 'Service', 'nats', (SELECT id FROM supervision_nodes WHERE node_id = %s) "
            "FROM generate_series(1, %s) n",
            [f"{PREFIX}-root", CHANGES],
        )


def run() -> Iterator[dict]:
    from django.db import connection, transaction

    from mistersmith.operations.snapshots.api import ExportOptions, export_snapshot
    from mistersmith.operations.snapshots.diff import diff_snapshots

    with bench_database(), tempfile.TemporaryDirectory(prefix="bench-snapshot-diff-") as folder:
        ensure_tree(PREFIX, NODES)
        path = export_snapshot(ExportOptions(output=Path(folder) / "before.tar", hive=False)).path
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM supervision_nodes), (SELECT count(*) FROM supervision_failures)"
            )
            nodes, failures = cursor.fetchone()
        common = {"nodes": nodes, "failures": failures, "snapshot_mb": round(path.stat().st_size / 2**20, 1)}

        summary = diff_snapshots(path).summary()
        yield {
            "figure": "snapshot_diff_now",
            **common,
            **measure(lambda: diff_snapshots(path), repeat=3, warmup=1),
            "summary": summary,
        }
        with transaction.atomic():
            _change_the_tree()
            summary = diff_snapshots(path).summary()
            expected = {"added": CHANGES, "status": CHANGES, "policy": CHANGES, "removed": 0}
            if any(summary[key] != value for key, value in expected.items()):
                raise RuntimeError(f"the diff found {summary}, not {expected}")
            yield {
                "figure": "snapshot_diff_now_changed",
                **common,
                **measure(lambda: diff_snapshots(path), repeat=3, warmup=1),
                "summary": summary,
            }
            transaction.set_rollback(True)
        connection.close()
        wall_s, rss_mb = timed(["diff_state", str(path)], Path(folder) / "diff_state.log")
        yield {
            "figure": "diff_state_command",
            **common,
            "wall_s": round(wall_s, 1),
            "peak_rss_mb": round(rss_mb),
            "machine": machine(),
        }
