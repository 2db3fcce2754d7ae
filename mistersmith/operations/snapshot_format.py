"""The snapshot file: one uncompressed tar whose first member is ``manifest.json``, followed by
one individually compressed member per part (a table's COPY text, a stream's messages, a Hive
Mind file).

Why this shape:

- The manifest comes first, so listing snapshots (the admin page) reads a few kilobytes, not
  the whole archive. Its checksums are known first because each member is written (and hashed)
  to a spool file before the tar is assembled.
- Members are compressed one by one and the tar around them is not: verifying a checksum hashes
  the stored bytes without decompressing anything, a restore seeks straight to the member it
  needs, and ``tar tf`` / ``tar xf`` plus ``zstd -d`` or ``gunzip`` open one by hand.
- zstd (level 3) by default: it compresses PostgreSQL COPY text about as well as gzip -6 at
  several times the speed, which is what keeps a million-failure export well inside a minute
  on a small machine. gzip (standard library, readable anywhere) and none are there too.

Checksums guard against corruption and edited members. They are not a signature: anyone who
can edit the file can edit the manifest; access to the snapshot directory is the boundary.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

FORMAT = "mistersmith-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024
SUFFIX = ".tar"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.tar$")

CODECS = {"zstd": ".zst", "gzip": ".gz", "none": ""}
DEFAULT_CODEC = "zstd"
ZSTD_LEVEL = 3
GZIP_LEVEL = 6


class SnapshotError(Exception):
    """A snapshot cannot be written, read or restored; the message says why and what to do."""


class UnsupportedSnapshot(SnapshotError):
    """Not a snapshot, or one of a format version this console does not read."""


class ChecksumMismatch(SnapshotError):
    """A member's bytes differ from what the manifest says: the file is damaged or was edited."""


@cache
def console_version() -> str:
    """The console's version, from pyproject.toml (the one place it is written)."""
    import tomllib

    from django.conf import settings

    with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as file:
        return str(tomllib.load(file)["project"]["version"])


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


@contextmanager
def compressed_writer(target: BinaryIO, codec: str) -> Iterator[IO[bytes]]:
    """A file that compresses what is written to it into ``target`` (left open)."""
    if codec == "zstd":
        with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(target, closefd=False) as writer:
            yield writer
    elif codec == "gzip":
        with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as writer:
            yield writer
    elif codec == "none":
        yield target
    else:
        raise SnapshotError(f"Unknown compression {codec!r}; use one of {', '.join(CODECS)}.")


@contextmanager
def decompressed_reader(source: IO[bytes], codec: str) -> Iterator[IO[bytes]]:
    """A file that reads ``source`` decompressed."""
    if codec == "zstd":
        with zstandard.ZstdDecompressor().stream_reader(source, closefd=False) as reader:
            yield reader
    elif codec == "gzip":
        with gzip.GzipFile(fileobj=source, mode="rb") as reader:
            yield reader
    elif codec == "none":
        yield source
    else:
        raise UnsupportedSnapshot(f"Unknown member compression {codec!r}.")


def chunks(file: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while data := file.read(size):
        yield data


def write_archive(path: Path, manifest: dict[str, Any], spool: dict[str, Path]) -> None:
    """Assemble the tar: the manifest, then each member's spool file in the manifest's order."""
    body = json.dumps(manifest, indent=2, sort_keys=False).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        info.mtime = 0
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(body))
        for member in manifest["members"]:
            spooled = spool[member["name"]]
            info = tarfile.TarInfo(member["name"])
            info.size = spooled.stat().st_size
            info.mtime = 0
            info.mode = 0o600
            with spooled.open("rb") as file:
                tar.addfile(info, file)


def open_archive(path: Path) -> tarfile.TarFile:
    """The archive for reading (random access); UnsupportedSnapshot when it is no tar at all."""
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as error:
        raise UnsupportedSnapshot(
            f"{path.name} is not a MisterSmith snapshot (not an uncompressed tar: {error})."
        ) from error


def read_manifest(tar: tarfile.TarFile, name: str = "") -> dict[str, Any]:
    """The manifest, checked for a format and version this console reads."""
    label = name or "The file"
    try:
        info = tar.getmember(MANIFEST)
    except KeyError:
        raise UnsupportedSnapshot(f"{label} has no {MANIFEST}: it is not a MisterSmith snapshot.") from None
    if not info.isfile() or info.size > MANIFEST_MAX_BYTES:
        raise UnsupportedSnapshot(f"{label}: {MANIFEST} is not a regular file of a sensible size.")
    file = tar.extractfile(info)
    assert file is not None
    try:
        manifest = json.loads(file.read())
    except ValueError as error:
        raise UnsupportedSnapshot(f"{label}: {MANIFEST} is not valid JSON ({error}).") from error
    check_format(manifest, label)
    return manifest


def check_format(manifest: Any, label: str = "The snapshot") -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsupportedSnapshot(f"{label} is not a MisterSmith snapshot (its manifest names no {FORMAT!r} format).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UnsupportedSnapshot(f"{label} has an unknown format version {version!r}; this console reads 1.")
    if version > FORMAT_VERSION:
        raise UnsupportedSnapshot(
            f"{label} has format version {version}, newer than the {FORMAT_VERSION} this console reads "
            f"(it was written by console {manifest.get('console_version', '?')}; this is {console_version()}). "
            "Restore it with that console version or a later one."
        )
    if not isinstance(manifest.get("members"), list):
        raise UnsupportedSnapshot(f"{label}: the manifest lists no members.")


def verify_members(
    tar: tarfile.TarFile, manifest: dict[str, Any], on_bytes: Callable[[int], object] | None = None
) -> int:
    """Check every member against its manifest size and sha256, and that nothing is missing or
    extra. Reads only; raises ChecksumMismatch naming every bad member. Returns the member count."""
    listed = {member["name"]: member for member in manifest["members"]}
    present = {info.name: info for info in tar.getmembers() if info.name != MANIFEST}
    problems = [f"{name}: missing from the archive" for name in listed if name not in present]
    problems += [f"{name}: in the archive but not in the manifest" for name in present if name not in listed]
    for name, member in listed.items():
        info = present.get(name)
        if info is None:
            continue
        if not info.isfile():
            problems.append(f"{name}: not a regular file")
            continue
        digest = hashlib.sha256()
        file = tar.extractfile(info)
        assert file is not None
        for data in chunks(file):
            digest.update(data)
            if on_bytes is not None:
                on_bytes(len(data))
        if info.size != member.get("size") or digest.hexdigest() != member.get("sha256"):
            problems.append(f"{name}: checksum mismatch")
    if problems:
        raise ChecksumMismatch("The snapshot failed verification; nothing was changed. " + "; ".join(problems) + ".")
    return len(listed)


@contextmanager
def member_reader(tar: tarfile.TarFile, member: dict[str, Any], codec: str) -> Iterator[IO[bytes]]:
    """One member's content, decompressed."""
    file = tar.extractfile(member["name"])
    if file is None:
        raise UnsupportedSnapshot(f"{member['name']} is not a regular file.")
    with file, decompressed_reader(file, codec) as reader:
        yield reader


def member_name(kind: str, name: str, codec: str) -> str:
    extension = {"table": ".copy", "stream": ".msgpack", "hive": ""}[kind]
    folder = {"table": "db", "stream": "streams", "hive": "hive"}[kind]
    return f"{folder}/{name}{extension}{CODECS[codec]}"
