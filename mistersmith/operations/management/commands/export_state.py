"""manage.py export_state: one snapshot archive of the whole console state (docs/snapshots.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mistersmith.operations.snapshots.api import ExportOptions, SnapshotError, export_snapshot, snapshot_dir
from mistersmith.operations.snapshots.export import DEFAULT_STREAM_MAX_BYTES
from mistersmith.operations.snapshots.format import CODECS, DEFAULT_CODEC
from mistersmith.operations.snapshots.progress import Progress


def byte_size(text: str) -> int:
    """``500M``, ``2G``, ``1048576``: a size in bytes (K, M, G are powers of 1024)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise ValueError(f"{text!r} is not a size such as 500M or 2G") from None
    if value < 0:
        raise ValueError("a size cannot be negative")
    return value


class Command(BaseCommand):
    help = (
        "Write a snapshot: the supervision and agents tables, discoveries, bridge state, the Hive Mind "
        "files and, with --streams, the streams' messages."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            "-o",
            type=Path,
            help=f"a file or a directory (default: the snapshot directory, {snapshot_dir()})",
        )
        parser.add_argument("--streams", action="store_true", help="include the streams' retained messages")
        parser.add_argument(
            "--stream-max-bytes",
            type=byte_size,
            default=DEFAULT_STREAM_MAX_BYTES,
            help="cap per stream (e.g. 500M; 0 for none); the newest messages that fit are kept (default 256M)",
        )
        parser.add_argument("--compression", choices=list(CODECS), default=DEFAULT_CODEC, help="of each member")
        parser.add_argument("--no-hive", action="store_true", help="leave the Hive Mind files out")
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        export = ExportOptions(
            output=options["output"],
            streams=options["streams"],
            stream_max_bytes=options["stream_max_bytes"] or None,
            compression=options["compression"],
            hive=not options["no_hive"],
            created_by="manage.py export_state",
            progress=Progress(False if options["quiet"] else None),
        )
        try:
            result = export_snapshot(export)
        except SnapshotError as error:
            raise CommandError(str(error)) from error
        manifest = result.manifest
        if options["verbosity"] >= 1:
            for name, component in manifest["components"].items():
                unit = "messages" if name == "streams" else "rows"
                self.stdout.write(f"  {name}: {component['rows']:,} {unit} in {len(component['members'])} members")
            for member in manifest["members"]:
                if member.get("truncated"):
                    self.stdout.write(
                        f"  {member['name']}: cut to {member['messages']:,} messages by --stream-max-bytes"
                    )
        size = result.path.stat().st_size
        self.stdout.write(f"Wrote {result.path} ({size / 1024 / 1024:.1f} MiB) in {result.seconds:.1f} s.")
