"""Reading PostgreSQL's COPY text format (what a snapshot's table members hold) in Python.

A restore hands the text back to PostgreSQL and never parses it; the snapshot diff reads two
tables of a snapshot without a database, so it needs the format's rules, which are few
(https://www.postgresql.org/docs/current/sql-copy.html, "Text Format"):

- one row per line; the columns separated by a tab; ``\\N`` alone is NULL;
- inside a value a backslash escapes: ``\\b \\f \\n \\r \\t \\v \\\\``, ``\\`` and one to three octal
  digits, ``\\x`` and one or two hex digits (a byte each), any other character stands for itself.
  So a tab or a newline inside a value never splits a row or a column;
- an array column holds PostgreSQL's array literal, ``{Crash,"two words",NULL}``, itself parsed
  here (one dimension: the only arrays the supervision tables have).

Escapes are undone on bytes and the value decoded as UTF-8 afterwards, since ``\\xHH`` and octal
escapes are bytes of the encoding, not characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mistersmith.operations.snapshots.format import UnsupportedSnapshot

NULL = b"\\N"
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape_match(match: re.Match[bytes]) -> bytes:
    octal, hexadecimal, other = match.groups()
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexadecimal is not None:
        return bytes([int(hexadecimal, 16)])
    return _SIMPLE.get(other, other)


def field_value(raw: bytes) -> str | None:
    """One column's text as PostgreSQL meant it (None for ``\\N``)."""
    if raw == NULL:
        return None
    if b"\\" in raw:
        raw = _ESCAPE.sub(_unescape_match, raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnsupportedSnapshot(f"a value is not UTF-8 text ({error}).") from error


def row_values(line: bytes) -> list[str | None]:
    """One line of COPY text (with or without its newline) as its column values."""
    return [field_value(raw) for raw in line.rstrip(b"\n").split(b"\t")]


def rows(lines: Iterable[bytes], columns: int, label: str) -> Iterator[list[bytes]]:
    """The rows of a member, each as its columns' raw (still escaped) bytes, checked to have
    ``columns`` of them (a damaged or edited member is a SnapshotError naming the line, never an
    IndexError later). The caller unescapes (``field_value``) only the columns it reads."""
    for number, line in enumerate(lines, start=1):
        if line == b"\\.\n" or line == b"\\.":  # the end marker older clients wrote
            return
        raw = line.rstrip(b"\n").split(b"\t")
        if len(raw) != columns:
            raise UnsupportedSnapshot(f"{label}: line {number} has {len(raw)} columns, not {columns}.")
        yield raw


def array_value(text: str | None) -> list[str | None] | None:
    """A one-dimensional array literal (``{a,"b c",NULL}``) as a list of its elements' texts."""
    if text is None:
        return None
    if not (text.startswith("{") and text.endswith("}")):
        raise UnsupportedSnapshot(f"{text[:80]!r} is not an array literal.")
    body = text[1:-1]
    items: list[str | None] = []
    if not body.strip():
        return items
    position = 0
    while True:
        item, position = _array_item(body, position, text)
        items.append(item)
        if position == len(body):
            return items
        if body[position] != ",":
            raise UnsupportedSnapshot(f"{text[:80]!r} is not a one-dimensional array literal.")
        position += 1


def _array_item(body: str, position: int, text: str) -> tuple[str | None, int]:
    """The element starting at ``position`` (leading spaces skipped) and where it ends."""
    while position < len(body) and body[position].isspace():
        position += 1
    if position < len(body) and body[position] == "{":
        raise UnsupportedSnapshot(f"{text[:80]!r}: arrays of more than one dimension are not read here.")
    quoted = position < len(body) and body[position] == '"'
    position += quoted
    out: list[str] = []
    while position < len(body):
        char = body[position]
        if char == "\\" and position + 1 < len(body):
            out.append(body[position + 1])
            position += 2
            continue
        if quoted and char == '"':
            position += 1
            while position < len(body) and body[position].isspace():
                position += 1
            return "".join(out), position
        if not quoted and char == ",":
            break
        out.append(char)
        position += 1
    if quoted:
        raise UnsupportedSnapshot(f"{text[:80]!r} has an unterminated quoted element.")
    item = "".join(out).strip()
    return (None if item.upper() == "NULL" else item), position
