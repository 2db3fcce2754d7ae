"""The snapshot diff (mistersmith/operations/snapshots/diff.py), through real PostgreSQL: two real
snapshots of a changed installation, a snapshot against now, rows per table, damaged and edited
snapshots, the compare page, its JSON download and the diff_state command."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mistersmith.operations.snapshots.api import ExportOptions, export_snapshot
from mistersmith.operations.snapshots.diff import diff_snapshots
from mistersmith.operations.snapshots.format import MANIFEST, ChecksumMismatch, SnapshotError
from mistersmith.operations.snapshots.tree_state import live_tree, snapshot_tree
from mistersmith.simulator import demo
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionPolicy

pytestmark = pytest.mark.django_db

# A name COPY must escape: a tab, a newline, a backslash, a carriage return, quotes and non-ASCII.
ODD_NAME = 'odd\tname\nwith \\ back\rslash "q" ünï ✓'


@pytest.fixture
def snapshots(tmp_path, settings) -> Path:
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.HIVE_DB_PATH = tmp_path / "absent-hive.db"  # no Hive Mind files: the real ones stay out of it
    settings.HIVE_MEMORY_DB_PATH = tmp_path / "absent-memory.db"
    return settings.SNAPSHOT_DIR


def export() -> Path:
    return export_snapshot(ExportOptions(hive=False)).path


def service(name: str, parent: SupervisionNode, status: str = "active") -> SupervisionNode:
    return SupervisionNode.objects.create(
        node_id=name, node_type="Service", node_type_detail="nats", status=status, parent=parent
    )


@pytest.fixture
def installation(snapshots):
    """A demo tree plus nodes of the test's own: one to delete (with failures), one whose status
    changes, one whose policy changes, one whose parent moves."""
    demo.seed(prefix="sd", nodes=20, failures=30, sessions=0, hive=False)
    root = SupervisionNode.objects.get(node_id="sd-root")
    nodes = {
        "doomed": service("sd-doomed", root),
        "flaky": service("sd-flaky", root),
        "tuned": service("sd-tuned", root),
        "mover": service("sd-mover", root),
        "odd": service(ODD_NAME, root),
    }
    for _ in range(3):
        SupervisionFailure.objects.create(node=nodes["doomed"], failure_reason="Crash", failure_detail="x")
    SupervisionPolicy.objects.create(node=nodes["tuned"], escalate_on_error_types=["Crash", "Heartbeat Timeout"])
    SupervisionPolicy.objects.create(node=nodes["odd"], escalate_on_error_types=['with "quote"', "back\\slash"])
    return root, nodes


def change(root: SupervisionNode, nodes: dict[str, SupervisionNode]) -> SupervisionNode:
    """The changes the diff must find, exactly: one node added, one removed (its failures go with
    it), a status changed, two policy fields changed, a parent moved."""
    added = service("sd-added", root, status="inactive")
    with connection.cursor() as cursor:  # the runtime's ON DELETE CASCADE takes its failures
        cursor.execute("DELETE FROM supervision_nodes WHERE id = %s", [nodes["doomed"].id])
    SupervisionNode.objects.filter(pk=nodes["flaky"].pk).update(status="failed")
    SupervisionPolicy.objects.filter(node=nodes["tuned"]).update(
        max_restarts=9, escalate_on_error_types=["Crash", "HeartbeatTimeout"]
    )
    SupervisionNode.objects.filter(pk=nodes["mover"].pk).update(parent=nodes["flaky"])
    return added


def assert_exactly_the_changes(diff, nodes, added) -> None:
    tree = diff.tree
    assert [(node, state.name, state.status) for node, state in tree.added] == [(added.id, "sd-added", "inactive")]
    assert [(node, state.name) for node, state in tree.removed] == [(nodes["doomed"].id, "sd-doomed")]
    by_name = {change.after.name: change for change in tree.changed}
    assert set(by_name) == {"sd-flaky", "sd-tuned", "sd-mover"}
    flaky = by_name["sd-flaky"]
    assert (flaky.before.status, flaky.after.status) == ("active", "failed")
    assert not flaky.parent_changed and flaky.policy_changes == ()
    tuned = by_name["sd-tuned"]
    assert not tuned.status_changed and not tuned.parent_changed
    assert [(c.field, c.before, c.after) for c in tuned.policy_changes] == [
        ("max_restarts", 5, 9),
        ("escalate_on_error_types", ["Crash", "Heartbeat Timeout"], ["Crash", "HeartbeatTimeout"]),
    ]
    mover = by_name["sd-mover"]
    assert mover.parent_changed and (mover.before.parent, mover.after.parent) == (
        nodes["mover"].parent_id,
        nodes["flaky"].id,
    )
    [row] = [row for row in diff.changed_rows(10) if row.name == "sd-mover"]
    assert row.parent == ("sd-root", "sd-flaky")
    counts = {count.table: count for count in diff.counts}
    assert (counts["supervision_nodes"].before, counts["supervision_nodes"].difference) == (
        SupervisionNode.objects.count(),
        0,
    )
    assert counts["supervision_failures"].difference == -3
    assert counts["supervision_failures"].after == SupervisionFailure.objects.count()
    assert counts["supervision_policies"].difference == 0


# --- The diff through real snapshots -----------------------------------------------------------


def test_a_snapshot_holds_the_tree_as_the_database_does(installation):
    path = export()
    tree, manifest = snapshot_tree(path)
    assert tree == live_tree()
    _, nodes = installation
    odd = tree[nodes["odd"].id]
    assert odd.name == ODD_NAME
    assert odd.policy["escalate_on_error_types"] == ['with "quote"', "back\\slash"]
    assert odd.policy["backoff_factor"] == Decimal("2.00") and odd.policy["escalate_on_limit"] is True
    assert tree[nodes["doomed"].id].policy is None
    assert manifest["format"] == "mistersmith-snapshot"


def test_snapshot_against_snapshot_and_against_now_give_exactly_the_changes(installation):
    root, nodes = installation
    first = export()
    assert diff_snapshots(first).tree.is_empty()
    added = change(root, nodes)
    second = export()
    assert_exactly_the_changes(diff_snapshots(first, second), nodes, added)
    now = diff_snapshots(first)
    assert_exactly_the_changes(now, nodes, added)
    assert now.after.is_now and now.before.snapshot == first.name
    backwards = diff_snapshots(second, first)
    assert [state.name for _, state in backwards.tree.added] == ["sd-doomed"]
    assert [state.name for _, state in backwards.tree.removed] == ["sd-added"]


def test_rows_per_table_cover_every_state_table(installation):
    path = export()
    diff = diff_snapshots(path)
    counts = {count.table: (count.before, count.after) for count in diff.counts}
    manifest_tables = [m["table"] for m in snapshot_tree(path)[1]["members"] if m["kind"] == "table"]
    assert list(counts)[: len(manifest_tables)] == manifest_tables
    with connection.cursor() as cursor:
        for table, (before, after) in counts.items():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            assert before == after == cursor.fetchone()[0], table


def test_the_json_holds_the_whole_diff(installation):
    root, nodes = installation
    first = export()
    change(root, nodes)
    document = json.loads(json.dumps(diff_snapshots(first).as_json()))
    assert document["summary"] == {"added": 1, "removed": 1, "changed": 3, "status": 1, "parent": 1, "policy": 1}
    assert document["before"]["snapshot"] == first.name and document["after"]["snapshot"] is None
    [tuned] = [item for item in document["changed"] if item["name"] == "sd-tuned"]
    assert tuned["policy"][0] == {"field": "max_restarts", "before": 5, "after": 9}
    [failures] = [count for count in document["counts"] if count["table"] == "supervision_failures"]
    assert failures["difference"] == -3 and failures["after"] == failures["before"] - 3


# --- Damaged and edited snapshots -------------------------------------------------------------


def rewrite(path: Path, member_name: str, edit, manifest_edit=None, prefix: str = "edited") -> Path:
    """A copy of the snapshot with one member's content changed by ``edit`` (recompressed, so it
    is a valid zstd stream) and, optionally, the manifest changed; checksums are left as they were."""
    target = path.with_name(f"{prefix}-{path.name}")
    with tarfile.open(path) as source, tarfile.open(target, "w") as tar:
        manifest = json.loads(source.extractfile(MANIFEST).read())
        if manifest_edit:
            manifest_edit(manifest)
        for info in source.getmembers():
            if info.name == MANIFEST:
                data = json.dumps(manifest).encode()
            else:
                data = source.extractfile(info).read()
                if info.name == member_name:
                    data = zstandard.ZstdCompressor().compress(
                        edit(zstandard.ZstdDecompressor().decompressobj().decompress(data))
                    )
            info = tarfile.TarInfo(info.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def test_an_edited_member_fails_its_checksum(installation):
    path = export()
    edited = rewrite(path, "db/supervision_nodes.copy.zst", lambda raw: raw.replace(b"\tactive\t", b"\tfailed\t", 1))
    with pytest.raises(ChecksumMismatch, match=r"supervision_nodes\.copy\.zst fails its checksum"):
        diff_snapshots(edited)
    garbled = rewrite(path, "db/supervision_policies.copy.zst", lambda raw: raw.replace(b"\t", b" "))
    with pytest.raises(ChecksumMismatch, match="damaged or was edited"):
        diff_snapshots(garbled)


def test_damaged_and_foreign_files_are_snapshot_errors(installation, tmp_path):
    path = export()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    not_a_tar = tmp_path / "not.tar"
    not_a_tar.write_bytes(b"hello")
    without_nodes = rewrite(
        path,
        "",
        None,
        lambda m: m.update(members=[x for x in m["members"] if x.get("table") != "supervision_nodes"]),
        prefix="without-nodes",
    )
    wrong_rows = rewrite(
        path,
        "",
        None,
        lambda m: [x.update(rows=x["rows"] + 1) for x in m["members"] if x.get("table") == "supervision_nodes"],
        prefix="wrong-rows",
    )
    for bad, message in (
        (truncated, "damaged tar"),
        (not_a_tar, "not a MisterSmith snapshot"),
        (without_nodes, "holds no supervision_nodes table"),
        (wrong_rows, "not the .* its manifest says"),
    ):
        with pytest.raises(SnapshotError, match=message):
            diff_snapshots(bad)
    with pytest.raises(SnapshotError):
        diff_snapshots(path, truncated)


# --- The page, its download and the command ---------------------------------------------------


def test_only_superusers_compare(client, django_user_model, installation):
    path = export()
    for url in (reverse("snapshots:compare"), reverse("snapshots:compare_json")):
        response = client.get(url, {"before": path.name})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        client.force_login(django_user_model.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", is_staff=True))
        assert client.get(url, {"before": path.name}).status_code == 403
        assert client.post(url, {"before": path.name}).status_code == 403
        client.logout()


def test_the_compare_page_shows_the_changes(admin_client, installation):
    root, nodes = installation
    first = export()
    listing = admin_client.get(reverse("snapshots:list")).content.decode()
    assert f"{reverse('snapshots:compare')}?before={first.name}&amp;after=now" in listing
    change(root, nodes)
    response = admin_client.get(reverse("snapshots:compare"), {"before": first.name, "after": "now"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 added, 1 removed, 3 changed" in html
    assert "sd-added" in html and "sd-doomed" in html
    assert '<span class="before">active</span> &rarr; <span class="after">failed</span>' in html
    assert "max_restarts: 5 &rarr; 9" in html and "sd-root &rarr; sd-flaky" in html
    assert 'data-table="supervision_failures"' in html and ">-3</td>" in html
    assert admin_client.post(reverse("snapshots:compare"), {"before": first.name}).status_code == 405

    download = admin_client.get(reverse("snapshots:compare_json"), {"before": first.name, "after": "now"})
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="snapshot-diff-')
    assert download.json()["summary"]["changed"] == 3


def test_bad_input_is_told_on_the_page_never_a_server_error(admin_client, installation, snapshots):
    path = export()
    damaged = snapshots / "damaged.tar"
    damaged.write_bytes(path.read_bytes()[:3000])
    cases = {
        "missing.tar": "There is no snapshot",
        "../etc/passwd": "not a snapshot file name",
        "damaged.tar": "damaged",
    }
    for name, message in cases.items():
        response = admin_client.get(reverse("snapshots:compare"), {"before": name})
        assert response.status_code == 400, name
        assert 'id="compare-error"' in response.content.decode() and message in response.content.decode(), name
        answer = admin_client.get(reverse("snapshots:compare_json"), {"before": path.name, "after": name})
        assert answer.status_code == 400 and message in answer.json()["error"]
    hostile = admin_client.get(reverse("snapshots:compare"), {"before": "<script>x</script>.tar"})
    assert hostile.status_code == 400 and "<script>x" not in hostile.content.decode()
    assert admin_client.get(reverse("snapshots:compare")).status_code == 200  # the form alone
    assert admin_client.get(reverse("snapshots:compare_json")).status_code == 400


def test_the_page_answers_in_a_constant_number_of_queries(admin_client, installation):
    path = export()
    url = reverse("snapshots:compare")
    admin_client.get(url, {"before": path.name})  # warm the session and the content types
    with CaptureQueriesContext(connection) as small:
        admin_client.get(url, {"before": path.name})
    root = SupervisionNode.objects.get(node_id="sd-root")
    more = [
        SupervisionNode(node_id=f"sd-more-{n}", node_type="Service", node_type_detail="x", parent=root)
        for n in range(120)
    ]
    SupervisionNode.objects.bulk_create(more)
    SupervisionPolicy.objects.bulk_create([SupervisionPolicy(node=node) for node in more])
    with CaptureQueriesContext(connection) as large:
        response = admin_client.get(url, {"before": path.name})
    assert "120 added" in response.content.decode()
    assert len(large.captured_queries) == len(small.captured_queries)


def test_the_command_prints_the_summary(installation):
    root, nodes = installation
    first = export()
    change(root, nodes)
    second = export()
    out = io.StringIO()
    call_command("diff_state", first.name, str(second), stdout=out)
    text = out.getvalue()
    assert "1 added, 1 removed, 3 changed (1 status, 1 parent, 1 policy)" in text
    assert "+ sd-added (Service, inactive)" in text and "- sd-doomed" in text
    assert "~ sd-flaky: status active -> failed" in text
    assert "~ sd-mover: parent sd-root -> sd-flaky" in text
    assert "max_restarts 5 -> 9" in text and "supervision_failures:" in text and "(-3)" in text
    out = io.StringIO()
    call_command("diff_state", first.name, "now", "--json", stdout=out)
    assert json.loads(out.getvalue())["summary"]["removed"] == 1
    with pytest.raises(CommandError, match="There is no snapshot"):
        call_command("diff_state", "missing.tar")
    with pytest.raises(CommandError, match="not a MisterSmith snapshot"):
        call_command("diff_state", __file__)
