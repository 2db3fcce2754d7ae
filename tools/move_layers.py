#!/usr/bin/env python3
"""The mechanical package move of issue 13 (phase 2): every module to its floor, by one table.

Run from the repository root on a clean worktree, after the other branches are merged:

    python tools/move_layers.py --dry-run     # what would move and which files would be rewritten
    python tools/move_layers.py               # git mv, new package files, imports rewritten
    python tools/move_layers.py --table       # MOVES as the Markdown table of docs/architecture.md

What it does, in order:
1. ``git mv`` each (old, new) of MOVES (a file or a whole directory), creating ``__init__.py`` in
   each new Python package directory; NEW_FILES are written (the new apps' AppConfigs).
2. Rewrites every tracked text file: dotted module names (imports, ``mock.patch`` and
   ``monkeypatch`` targets, settings and ``include()`` strings, INSTALLED_APPS entries, docs),
   ``from package import module`` forms (``from mistersmith import nats`` becomes
   ``from mistersmith.jetstream import client as nats``), and repository paths in comments and
   docs (``mistersmith/bridge.py``). Longest name first, one pass per file, so a rewritten name is
   never rewritten again.
3. EDITS: the few changes that are not a rename (the live app keeps the label "mistersmith"),
   then ``ruff`` sorts the rewritten imports (run it with the project's Python: .venv/bin/python).

It moves code and rewrites references; it does not split modules (the bridge's app handlers to
each app's feeds.py, the admin mixins to web/): those are the hand-made steps listed in
docs/architecture.md. It is a tool for the lead, not part of the application or of CI (tools/ is
neither installed nor tested by ``make test``); its check is to run it on a throwaway copy and run
``pytest --collect-only -q`` and ``lint-imports`` there.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# --- The one table: (old path, new path), files or whole directories ---------------------------

MOVES: list[tuple[str, str]] = [
    # jetstream/: talking to the runtime over NATS.
    ("mistersmith/nats.py", "mistersmith/jetstream/client.py"),
    ("mistersmith/messages.py", "mistersmith/jetstream/messages.py"),
    ("mistersmith/streams.py", "mistersmith/jetstream/streams.py"),
    ("mistersmith/subjects.py", "mistersmith/jetstream/subjects.py"),
    ("mistersmith/stream_reader.py", "mistersmith/jetstream/reader.py"),
    ("mistersmith/operations/history.py", "mistersmith/jetstream/history.py"),
    # web/: the admin's look and access.
    ("mistersmith/admin_scale.py", "mistersmith/web/admin_scale.py"),
    ("mistersmith/forms.py", "mistersmith/web/forms.py"),
    ("mistersmith/input_guard.py", "mistersmith/web/input_guard.py"),
    ("mistersmith/login_throttle.py", "mistersmith/web/login_throttle.py"),
    ("mistersmith/security.py", "mistersmith/web/security.py"),
    ("mistersmith/host_checks.py", "mistersmith/web/host_checks.py"),
    ("mistersmith/unavailable.py", "mistersmith/web/unavailable.py"),
    ("mistersmith/user_admin.py", "mistersmith/web/user_admin.py"),
    # live/: the live path as an app (label "mistersmith": same tables and permissions).
    ("mistersmith/apps.py", "mistersmith/live/apps.py"),
    ("mistersmith/models.py", "mistersmith/live/models.py"),
    ("mistersmith/admin.py", "mistersmith/live/admin.py"),
    ("mistersmith/migrations", "mistersmith/live/migrations"),
    ("mistersmith/live.py", "mistersmith/live/positions.py"),
    ("mistersmith/bridge.py", "mistersmith/live/bridge.py"),
    ("mistersmith/bridge_leader.py", "mistersmith/live/leader.py"),
    ("mistersmith/bridge_catchup.py", "mistersmith/live/catchup.py"),
    ("mistersmith/frames.py", "mistersmith/live/frames.py"),
    ("mistersmith/consumers.py", "mistersmith/live/consumer.py"),
    ("mistersmith/socket_session.py", "mistersmith/live/socket_session.py"),
    ("mistersmith/routing.py", "mistersmith/live/routing.py"),
    ("mistersmith/database_work.py", "mistersmith/jetstream/database_work.py"),
    ("mistersmith/runtime_probe.py", "mistersmith/live/runtime_probe.py"),
    ("mistersmith/server.py", "mistersmith/live/server.py"),  # uvicorn with the live sockets' clean stop
    ("mistersmith/log_filters.py", "mistersmith/live/log_filters.py"),  # the channel layer's repeated lines
    ("mistersmith/static", "mistersmith/live/static"),
    ("mistersmith/management/commands/bridge.py", "mistersmith/live/management/commands/bridge.py"),
    ("mistersmith/management/commands/ensure_streams.py", "mistersmith/live/management/commands/ensure_streams.py"),
    # operations/: verify/, metrics/, snapshots/, retention, rebuild (+ their commands and views).
    ("mistersmith/operations/verify.py", "mistersmith/operations/verify/report.py"),
    ("mistersmith/operations/matrix.py", "mistersmith/operations/verify/matrix.py"),
    ("mistersmith/operations/verify_database.py", "mistersmith/operations/verify/database.py"),
    ("mistersmith/operations/verify_hive.py", "mistersmith/operations/verify/hive.py"),
    ("mistersmith/operations/verify_live.py", "mistersmith/operations/verify/live.py"),
    ("mistersmith/operations/verify_schema.py", "mistersmith/operations/verify/schema.py"),
    ("mistersmith/operations/verify_urls.py", "mistersmith/operations/verify/urls.py"),
    ("mistersmith/operations/verify_views.py", "mistersmith/operations/verify/views.py"),
    ("mistersmith/operations/metrics.py", "mistersmith/operations/metrics/figures.py"),
    ("mistersmith/operations/metrics_middleware.py", "mistersmith/operations/metrics/middleware.py"),
    ("mistersmith/operations/metrics_view.py", "mistersmith/operations/metrics/view.py"),
    ("mistersmith/operations/snapshots.py", "mistersmith/operations/snapshots/api.py"),
    ("mistersmith/operations/snapshot_export.py", "mistersmith/operations/snapshots/export.py"),
    ("mistersmith/operations/snapshot_import.py", "mistersmith/operations/snapshots/restore.py"),
    ("mistersmith/operations/snapshot_format.py", "mistersmith/operations/snapshots/format.py"),
    ("mistersmith/operations/snapshot_tables.py", "mistersmith/operations/snapshots/tables.py"),
    ("mistersmith/operations/snapshot_streams.py", "mistersmith/operations/snapshots/streams.py"),
    ("mistersmith/operations/snapshot_hive.py", "mistersmith/operations/snapshots/hive.py"),
    ("mistersmith/operations/snapshot_progress.py", "mistersmith/operations/snapshots/progress.py"),
    ("mistersmith/snapshot_views.py", "mistersmith/operations/snapshots/views.py"),
    ("mistersmith/snapshot_urls.py", "mistersmith/operations/snapshots/urls.py"),
    ("mistersmith/management/commands/export_state.py", "mistersmith/operations/management/commands/export_state.py"),
    ("mistersmith/management/commands/import_state.py", "mistersmith/operations/management/commands/import_state.py"),
    ("mistersmith/management/commands/prune.py", "mistersmith/operations/management/commands/prune.py"),
    (
        "mistersmith/management/commands/rebuild_projections.py",
        "mistersmith/operations/management/commands/rebuild_projections.py",
    ),
    ("mistersmith/management/commands/verify_state.py", "mistersmith/operations/management/commands/verify_state.py"),
    # console/: cross-app pages and the `run` command.
    ("mistersmith/dashboard", "mistersmith/console/dashboard"),
    ("mistersmith/dashboard_urls.py", "mistersmith/console/dashboard/urls.py"),
    ("mistersmith/event_log", "mistersmith/console/event_log"),
    ("mistersmith/event_log_urls.py", "mistersmith/console/event_log/urls.py"),
    ("mistersmith/management/commands/run.py", "mistersmith/console/management/commands/run.py"),
    # simulator/: the runtime stand-in and demo data. Its package body (which imports models) moves
    # to a module: an app's package is imported before the models are ready.
    ("mistersmith/simulator/__init__.py", "mistersmith/simulator/thread.py"),
    ("mistersmith/demo.py", "mistersmith/simulator/demo.py"),
    ("mistersmith/management/commands/seed_demo.py", "mistersmith/simulator/management/commands/seed_demo.py"),
    ("mistersmith/management/commands/simulate.py", "mistersmith/simulator/management/commands/simulate.py"),
    # The apps: views/ packages; the agents' page modules beside their models.
    ("agents/views.py", "agents/views/api.py"),
    ("agents/pages/views.py", "agents/views/pages.py"),
    ("agents/discovery_page.py", "agents/views/discoveries.py"),
    ("agents/pages/selectors.py", "agents/selectors.py"),
    ("agents/pages/history.py", "agents/history.py"),
    ("agents/pages/texts.py", "agents/texts.py"),
    ("supervision/views.py", "supervision/views/restart.py"),
    ("supervision/tree.py", "supervision/views/tree.py"),
    # Tests mirror the packages (TEST_FLOORS); the cross-cutting ones stay at tests/ root.
    ("tests/mistersmith/conftest.py", "tests/console/conftest.py"),
    ("tests/mistersmith/payloads.py", "tests/live/payloads.py"),
]

TEST_FLOORS: dict[str, list[str]] = {
    "tests/live": [
        "bridge_agents",
        "bridge_catchup",
        "bridge_failover",
        "bridge_fuzz",
        "bridge_kill",
        "bridge_poison",
        "bridge_properties",
        "consumer_leave",
        "fault_nats_store_full",
        "fault_stream_deleted",
        "live_socket",
        "log_filters",
        "message_properties",
        "messages",
        "range_reader",
        "redis_layer",
        "runtime_probe",
        "scale_out",
        "services",
        "settings_number",
        "socket_lifecycle",
        "socket_limits",
        "socket_origin",
        "socket_real_server",
        "socket_session",
        "socket_session_real_server",
        "stream_reader",
        "streams",
    ],
    "tests/operations": [
        "metrics",
        "metrics_labels",
        "rebuild",
        "retention",
        "snapshot_safety",
        "snapshot_stream_stall",
        "snapshots",
        "verify_state",
    ],
    "tests/console": ["dashboard", "event_log", "freshness", "run_command"],
    "tests/simulator": ["simulator", "seed_demo_restarts"],
    "tests": [
        "crafted_input",
        "fault_postgres",
        "hostile_input",
        "live_json_permissions",
        "page_hygiene",
        "permission_matrix",
        "private_files",
        "security",
        "unavailable",
        "user_admin",
        "web_access",
    ],
}
MOVES += [
    (f"tests/mistersmith/test_{name}.py", f"{folder}/test_{name}.py")
    for folder, names in TEST_FLOORS.items()
    for name in names
]

# Files the move creates besides the packages' empty __init__.py: the new apps (their commands).
NEW_FILES: dict[str, str] = {
    "mistersmith/simulator/__init__.py": '"""The runtime stand-in and demo data (thread.py: SimulatorThread)."""\n',
    **{
        f"mistersmith/{name}/apps.py": (
            f'"""{label.capitalize()} as an app: only so Django finds its management commands (no models)."""\n\n'
            "from django.apps import AppConfig\n\n\n"
            f"class {label.capitalize()}Config(AppConfig):\n"
            f'    name = "mistersmith.{name}"\n'
            f'    label = "{label}"\n'
        )
        for name, label in (("operations", "operations"), ("console", "console"), ("simulator", "simulator"))
    },
}

# Packages the moves leave with nothing but their __init__.py.
EMPTIED: list[str] = [
    "mistersmith/management/commands/__init__.py",
    "mistersmith/management/__init__.py",
    "agents/pages/__init__.py",
    "tests/mistersmith/__init__.py",
]

# (file, after the move; old text; new text): what is not a rename. Each must match exactly once.
EDITS: list[tuple[str, str, str]] = [
    (
        "mistersmith/live/apps.py",
        '    name = "mistersmith"\n',
        '    name = "mistersmith.live"\n    label = "mistersmith"  # the tables, permissions and migrations keep it\n',
    ),
    (
        "mistersmith/settings.py",
        '    "mistersmith",\n',
        '    "mistersmith.live",\n    "mistersmith.operations",\n    "mistersmith.console",\n'
        '    "mistersmith.simulator",\n',
    ),
    (
        "mistersmith/urls.py",
        'FAVICON = Path(__file__).resolve().parent / "static" / "mistersmith" / "favicon.ico"',
        'FAVICON = Path(__file__).resolve().parent / "live" / "static" / "mistersmith" / "favicon.ico"',
    ),
]

TEXT_SUFFIXES = {".py", ".html", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".js", ".css", ".json"}
TEXT_NAMES = {"Makefile", "run"}
# Written in the target's names already: this table (old paths on purpose) and the architecture page.
SKIP_PREFIXES = ("tools/move_layers.py", "docs/architecture.md")
# Lines between these markers are in the target's names (the layers contract): never rewritten.
KEEP = re.compile(r"(?P<kept>#\s*move_layers: keep\b.*?#\s*move_layers: end\b)", re.DOTALL)


HIDDEN_DOT = "\x00"


def dotted(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def module_renames(moves: list[tuple[str, str]], root: Path) -> dict[str, str]:
    """Old dotted name -> new, for every moved Python module or package (not static files or tests' data)."""
    renames = {}
    for old, new in moves:
        if old.endswith("/__init__.py"):
            continue  # a package's body: see init_renames
        if old.endswith(".py") or ((root / old).is_dir() and any((root / old).rglob("*.py"))):
            renames[dotted(old)] = dotted(new)
    return renames


def init_renames(moves: list[tuple[str, str]]) -> dict[str, str]:
    """Old package name -> new module, for package bodies moved out of __init__.py: only the
    package's own name is rewritten, never its submodules' (mistersmith.simulator.options stays)."""
    return {dotted(old): dotted(new) for old, new in moves if old.endswith("/__init__.py")}


def path_renames(moves: list[tuple[str, str]]) -> dict[str, str]:
    return dict(moves)


def _alternation(names: list[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


def make_rewriter(
    renames: dict[str, str], paths: dict[str, str], exact: dict[str, str], submodules: dict[str, set[str]]
):
    """A function text -> text applying the three rewrites (see the module docstring). ``exact``:
    package bodies moved to a module (``submodules``: what stays importable from the package)."""
    parents: dict[str, dict[str, str]] = {}  # "mistersmith" -> {"nats": "mistersmith.jetstream.client"}
    for old, new in {**renames, **exact}.items():
        package, _, name = old.rpartition(".")
        if package:
            parents.setdefault(package, {})[name] = new
    from_import = re.compile(
        r"^(?P<indent>[ \t]*)from (?P<package>" + _alternation([*parents, *exact]) + r") import "
        r"(?:\((?P<group>[^)]*)\)|(?P<names>[^\n\\]+))",
        re.MULTILINE,
    )
    dotted_name = re.compile(
        r"(?<![\w.])(?:(?P<exact>" + _alternation(list(exact)) + r")(?![\w.])"
        r"|(?P<name>" + _alternation(list(renames)) + r")(?!\w))"
    )
    # A path ends where no word follows: "mistersmith/dashboard" is not "mistersmith/dashboard.html".
    path_name = re.compile(r"(?<![\w/.-])(?P<path>" + _alternation(list(paths)) + r")(?!\w)(?!\.\w)")

    def rewrite_from(match: re.Match) -> str:
        package, indent = match["package"], match["indent"]
        raw = match["group"] if match["group"] is not None else match["names"]
        comment = ""
        if match["names"] is not None and "#" in raw:
            raw, comment = raw.split("#", 1)
            comment = "  #" + comment.rstrip()
        items = [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
        if package in exact:  # the package's own names now live in its body's module; submodules stay
            stay = [item for item in items if item.split(" as ")[0].strip() in submodules[package]]
            go = [item for item in items if item not in stay]
            hidden = package.replace(".", HIDDEN_DOT)
            lines = [f"{indent}from {hidden} import {', '.join(stay)}"] if stay else []
            if go:
                lines.append(f"{indent}from {exact[package].replace('.', HIDDEN_DOT)} import {', '.join(go)}")
            return "\n".join(line + comment for line in lines)  # a noqa stays on each line it covered
        if package not in parents:
            return match.group(0)
        moved = {}
        kept = []
        for item in items:
            name, _, alias = item.partition(" as ")
            name, alias = name.strip(), alias.strip()
            if name in parents[package]:
                moved[name] = alias or name
            else:
                kept.append(item)
        if not moved:
            return match.group(0)
        lines = []
        if kept:
            lines.append(f"{indent}from {package} import {', '.join(kept)}")
        for name, alias in moved.items():
            new_package, _, new_name = parents[package][name].rpartition(".")
            suffix = f" as {alias}" if alias != new_name else ""
            # \x00 for the dots: the dotted pass below must not rename what is already new.
            lines.append(f"{indent}from {new_package.replace('.', HIDDEN_DOT)} import {new_name}{suffix}")
        return "\n".join(line + comment for line in lines)  # a noqa stays on each line it covered

    def rewrite(text: str) -> str:
        parts = KEEP.split(text)  # odd indexes: kept regions
        return "".join(part if index % 2 else rewrite_part(part) for index, part in enumerate(parts))

    def rewrite_part(text: str) -> str:
        text = from_import.sub(rewrite_from, text)
        text = dotted_name.sub(
            lambda m: (exact[m["exact"]] if m["exact"] else renames[m["name"]]).replace(".", HIDDEN_DOT), text
        )
        text = path_name.sub(lambda m: paths[m["path"]], text)
        return text.replace(HIDDEN_DOT, ".")

    return rewrite


def git(*args: str, root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def new_package_dirs(moves: list[tuple[str, str]], root: Path) -> list[Path]:
    """Directories the Python moves put modules in that are not packages yet (each needs an __init__.py)."""
    needed = set()
    moved_dirs = [root / new for old, new in moves if (root / old).is_dir()]  # they bring their own __init__
    for old, new in moves:
        if not (old.endswith(".py") or ((root / old).is_dir() and any((root / old).rglob("*.py")))):
            continue
        target = root / new
        folder = target.parent
        top = Path(new).parts[0]
        while folder != root / top and folder != root:
            needed.add(folder)
            folder = folder.parent
        if top == "tests":
            needed.add(target.parent)
    return sorted(
        folder
        for folder in needed
        if not (folder / "__init__.py").exists() and not any(folder.is_relative_to(d) for d in moved_dirs)
    )


def check(moves: list[tuple[str, str]], root: Path) -> list[str]:
    problems = []
    olds = [old for old, _ in moves]
    news = [new for _, new in moves]
    for old, new in moves:
        if not (root / old).exists():
            problems.append(f"{old}: not there (moved already, or renamed by a merge: update MOVES)")
        if (root / new).exists():
            problems.append(f"{new}: exists already")
    for name in {n for n in olds if olds.count(n) > 1} | {n for n in news if news.count(n) > 1}:
        problems.append(f"{name}: named twice in MOVES")
    return problems


def table() -> str:
    """MOVES as Markdown (docs/architecture.md), the test files grouped by the folder they go to."""
    lines = ["| Now | After the move |", "|---|---|"]
    lines += [f"| `{old}` | `{new}` |" for old, new in MOVES if not old.startswith("tests/mistersmith/test_")]
    for folder, names in TEST_FLOORS.items():
        lines.append(f"| `tests/mistersmith/test_` {', '.join(names)} | `{folder}/` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    parser.add_argument("--table", action="store_true", help="print MOVES as a Markdown table and stop")
    parser.add_argument("--allow-dirty", action="store_true", help="run on a worktree with uncommitted changes")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    root = Path(git("rev-parse", "--show-toplevel", root=Path.cwd()).strip())
    if git("status", "--porcelain", "--untracked-files=no", root=root).strip() and not args.allow_dirty:
        print("The worktree has uncommitted changes: commit or stash them first (or --allow-dirty).", file=sys.stderr)
        return 2
    problems = check(MOVES, root)
    if problems:
        print("Nothing moved:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    renames = module_renames(MOVES, root)
    exact = init_renames(MOVES)
    submodules = {
        package: {child.stem for child in (root / package.replace(".", "/")).iterdir() if child.name != "__init__.py"}
        for package in exact
    }
    rewrite = make_rewriter(renames, path_renames(MOVES), exact, submodules)
    packages = new_package_dirs(MOVES, root)

    if not args.dry_run:
        for folder in packages:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").write_text("")
        for old, new in MOVES:
            (root / new).parent.mkdir(parents=True, exist_ok=True)
            git("mv", old, new, root=root)
        for path, content in NEW_FILES.items():
            (root / path).write_text(content)
        for name in EMPTIED:
            left = [p for p in (root / name).parent.iterdir() if p.name not in ("__init__.py", "__pycache__")]
            if left:
                print(f"{name}: not removed, its package still holds {[p.name for p in left]}", file=sys.stderr)
            else:
                git("rm", "-q", name, root=root)
        git("add", *[str(f / "__init__.py") for f in packages], *NEW_FILES, root=root)

    changed = []
    for name in git("ls-files", root=root).splitlines():
        path = root / name
        if name.startswith(SKIP_PREFIXES) or name in NEW_FILES or not path.is_file():  # new files: new names
            continue
        if path.suffix not in TEXT_SUFFIXES and path.name not in TEXT_NAMES:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new_text = rewrite(text)
        if new_text != text:
            changed.append(name)
            if not args.dry_run:
                path.write_text(new_text)

    failed = []
    if not args.dry_run:
        for name, old, new in EDITS:
            path = root / name
            text = path.read_text()
            if text.count(old) != 1:
                failed.append(f"{name}: expected once, found {text.count(old)} times: {old.strip()[:60]!r}")
                continue
            path.write_text(text.replace(old, new))
    if not args.dry_run:  # rewritten imports sorted again, as `make format` would (ruff, if this Python has it)
        python_files = [name for name in changed if name.endswith(".py")] + [p for p in NEW_FILES if p.endswith(".py")]
        for command in (["check", "--fix", "--select", "I", "-q"], ["format", "-q"]):
            subprocess.run([sys.executable, "-m", "ruff", *command, *python_files], cwd=root, check=False)
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {len(MOVES)} paths ({len(renames)} Python modules or packages), new packages: {len(packages)}")
    print(f"{'would rewrite' if args.dry_run else 'rewrote'} {len(changed)} files:")
    for name in changed:
        print(f"  {name}")
    for problem in failed:
        print(f"EDIT not applied: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
