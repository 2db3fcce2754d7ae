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
can edit the file can edit the manifest; access to the snapshot directory is the boundary. So
nothing in a snapshot is trusted for resources either: the manifest's shape is checked before
any of it is used, every member is decompressed through ``BoundedReader`` (at most the size the
manifest declares, ``raw_size``, and never more than ``SNAPSHOT_MEMBER_MAX_BYTES``), and every
way a file can be malformed (a broken tar, deep JSON, a bad compressed stream) is a
SnapshotError that says so, never a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import zlib
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
# The most any one member may decompress to, whatever its manifest says (setting
# SNAPSHOT_MEMBER_MAX_BYTES overrides it); a member also never exceeds its declared raw_size.
MEMBER_MAX_BYTES = 8 * 1024**3
KINDS = {"table", "stream", "hive"}
# Keys each member kind must have, and their types (what the restore reads from the manifest).
MEMBER_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"name": str, "kind": str, "size": int, "sha256": str},
    "table": {"table": str, "columns": list, "rows": int},
    "stream": {"stream": str, "messages": int},
    "hive": {"file": str, "rows": int, "file_size": int},
}


class SnapshotError(Exception):
    """A snapshot cannot be written, read or restored; the message says why and what to do."""


class UnsupportedSnapshot(SnapshotError):
    """Not a snapshot, or one of a format version this console does not read."""


class ChecksumMismatch(SnapshotError):
    """A member's bytes differ from what the manifest says: the file is damaged or was edited."""


class MemberTooLarge(SnapshotError):
    """A member decompresses to more than its manifest declares or the global cap allows."""


def snapshot_dir() -> Path:
    """The snapshot directory (setting ``SNAPSHOT_DIR``): where exports go and the pages list.
    Here, at the bottom of the snapshot modules, so export and the listing both import it downward."""
    from django.conf import settings

    return Path(settings.SNAPSHOT_DIR)


def member_max_bytes() -> int:
    from django.conf import settings

    return int(getattr(settings, "SNAPSHOT_MEMBER_MAX_BYTES", MEMBER_MAX_BYTES))


def declared_size(member: dict[str, Any]) -> int | None:
    """The decompressed size the manifest declares (a Hive Mind file's size for older snapshots)."""
    declared = member.get("raw_size", member.get("file_size") if member.get("kind") == "hive" else None)
    return declared if isinstance(declared, int) and not isinstance(declared, bool) else None


# What a decompressor or a truncated tar raises on bytes that are not what they claim to be.
DECODE_ERRORS = (zstandard.ZstdError, zlib.error, EOFError, OSError, tarfile.TarError)


class BoundedReader(io.RawIOBase):
    """A member's decompressed content, read at most up to ``limit`` bytes (MemberTooLarge past
    it), and exactly ``declared`` bytes when the manifest declares a size; a decompression error
    is an UnsupportedSnapshot naming the member."""

    def __init__(self, source: IO[bytes], name: str, limit: int, declared: int | None) -> None:
        self.source, self.name, self.limit, self.declared = source, name, limit, declared
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        room = self.limit - self.count + 1  # one byte more than allowed tells "too large" from "exactly"
        size = room if size is None or size < 0 else min(size, room)
        try:
            data = self.source.read(size) if size else b""
        except DECODE_ERRORS as error:
            raise UnsupportedSnapshot(
                f"{self.name} cannot be decompressed ({error}); the snapshot is damaged."
            ) from error
        self.count += len(data)
        if self.count > self.limit:
            declared = f"the {self.declared:,} bytes its manifest declares" if self.declared is not None else ""
            raise MemberTooLarge(
                f"{self.name} decompresses to more than "
                + (declared or f"the {self.limit:,}-byte cap (SNAPSHOT_MEMBER_MAX_BYTES)")
                + "; it was refused."
            )
        if not data and size and self.declared is not None and self.count != self.declared:
            raise UnsupportedSnapshot(
                f"{self.name} decompresses to {self.count:,} bytes, not the {self.declared:,} its manifest declares."
            )
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


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


class CountingWriter(io.RawIOBase):
    """A write-only file that counts what passes through to ``target`` (a member's raw_size)."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
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
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UnsupportedSnapshot(f"{label} is a damaged tar ({error}).") from error
    if not info.isfile() or info.size > MANIFEST_MAX_BYTES:
        raise UnsupportedSnapshot(f"{label}: {MANIFEST} is not a regular file of a sensible size.")
    file = tar.extractfile(info)
    assert file is not None
    try:
        manifest = json.loads(file.read())
    except (ValueError, RecursionError) as error:
        raise UnsupportedSnapshot(f"{label}: {MANIFEST} is not valid JSON ({error}).") from error
    except tarfile.TarError as error:
        raise UnsupportedSnapshot(f"{label}: {MANIFEST} cannot be read ({error}).") from error
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
    problems = _manifest_problems(manifest)
    if problems:
        raise UnsupportedSnapshot(f"{label} has a malformed manifest: " + "; ".join(problems[:10]) + ".")


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not (isinstance(value, bool) and kind is int)


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """Every key the restore reads, present and of the right type (a crafted manifest is refused
    here rather than failing half-way with a KeyError or a TypeError)."""
    problems = []
    if manifest.get("compression") not in CODECS:
        problems.append(f"compression {manifest.get('compression')!r} is not one of {', '.join(CODECS)}")
    for key in ("database", "streams", "components"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            problems.append(f"{key} is not an object")
    migrations = (manifest.get("database") or {}).get("migrations", {}) if _is(manifest.get("database"), dict) else {}
    if not _is(migrations, dict) or not all(
        _is(names, list) and all(_is(n, str) for n in names) for names in migrations.values()
    ):
        problems.append("database.migrations is not an object of lists of names")
    streams = manifest.get("streams") if _is(manifest.get("streams"), dict) else {}
    for stream, identity in streams.items():
        if identity is not None and not (_is(identity, dict) and _is(identity.get("created"), (str, type(None)))):
            problems.append(f"streams.{stream} is not a stream identity")
    names = set()
    for index, member in enumerate(manifest["members"]):
        if not _is(member, dict):
            problems.append(f"member {index} is not an object")
            continue
        kind = member.get("kind")
        if kind not in KINDS:
            problems.append(f"member {index} has an unknown kind {kind!r}")
            continue
        for key, wanted in {**MEMBER_KEYS[""], **MEMBER_KEYS[kind]}.items():
            if not _is(member.get(key), wanted):
                problems.append(f"member {index} ({kind}) has no valid {key!r}")
        if _is(member.get("columns"), list) and not (member["columns"] and all(_is(c, str) for c in member["columns"])):
            problems.append(f"member {index} has invalid columns")
        raw_size = member.get("raw_size")
        if raw_size is not None and not (_is(raw_size, int) and raw_size >= 0):
            problems.append(f"member {index} has an invalid raw_size")
        if _is(member.get("size"), int) and member["size"] < 0:
            problems.append(f"member {index} has a negative size")
        if member.get("name") in names:
            problems.append(f"member {member.get('name')!r} is listed twice")
        names.add(member.get("name"))
    return problems


def verify_members(
    tar: tarfile.TarFile, manifest: dict[str, Any], on_bytes: Callable[[int], object] | None = None
) -> int:
    """Check every member against its manifest size and sha256, and that nothing is missing or
    extra. Reads only; raises ChecksumMismatch naming every bad member. Returns the member count."""
    listed = {member["name"]: member for member in manifest["members"]}
    try:
        present = {info.name: info for info in tar.getmembers() if info.name != MANIFEST}
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UnsupportedSnapshot(f"The snapshot is a damaged tar ({error}); nothing was changed.") from error
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
        try:
            for data in chunks(file):
                digest.update(data)
                if on_bytes is not None:
                    on_bytes(len(data))
        except (tarfile.TarError, EOFError, OSError) as error:
            problems.append(f"{name}: cannot be read ({error})")
            continue
        if info.size != member.get("size") or digest.hexdigest() != member.get("sha256"):
            problems.append(f"{name}: checksum mismatch")
    if problems:
        raise ChecksumMismatch("The snapshot failed verification; nothing was changed. " + "; ".join(problems) + ".")
    return len(listed)


@contextmanager
def member_reader(
    tar: tarfile.TarFile, member: dict[str, Any], codec: str, wrap: Callable[[IO[bytes]], Any] | None = None
) -> Iterator[IO[bytes]]:
    """One member's content, decompressed, bounded (BoundedReader). ``wrap`` sees the stored
    (compressed) bytes, e.g. for a progress bar."""
    try:
        file = tar.extractfile(member["name"])
    except (KeyError, tarfile.TarError) as error:
        raise UnsupportedSnapshot(f"{member['name']} cannot be read from the archive ({error}).") from error
    if file is None:
        raise UnsupportedSnapshot(f"{member['name']} is not a regular file.")
    declared = declared_size(member)
    cap = member_max_bytes()
    limit = min(declared, cap) if declared is not None else cap
    try:
        with file, decompressed_reader(wrap(file) if wrap else file, codec) as reader:
            yield BoundedReader(reader, member["name"], limit, declared)  # type: ignore[misc]
    except (zstandard.ZstdError, zlib.error, EOFError, tarfile.TarError) as error:
        raise UnsupportedSnapshot(
            f"{member['name']} cannot be decompressed ({error}); the snapshot is damaged."
        ) from error


def member_name(kind: str, name: str, codec: str) -> str:
    extension = {"table": ".copy", "stream": ".msgpack", "hive": ""}[kind]
    folder = {"table": "db", "stream": "streams", "hive": "hive"}[kind]
    return f"{folder}/{name}{extension}{CODECS[codec]}"
