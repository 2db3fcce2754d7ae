"""Reading PostgreSQL's COPY text (mistersmith/operations/snapshots/copytext.py): the format's
rules one by one, and PostgreSQL's own output of awkward values read back exactly."""

from __future__ import annotations

import pytest
from django.db import connection

from mistersmith.operations.snapshots.copytext import array_value, field_value, row_values, rows
from mistersmith.operations.snapshots.format import SnapshotError

AWKWARD = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",  # the two characters, not NULL
    "\b\f\v bells",
    "ünïcödé ✓ 日本",
    "",
    " spaces ",
]


def test_nulls_and_empty_strings_are_told_apart():
    assert row_values(b"\\N\t\t\\\\N\n") == [None, "", "\\N"]


def test_every_escape():
    assert field_value(b"a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh") == "a\tb\nc\rd\\e\bf\fg\vh"
    assert field_value(b"\\101\\x42\\7") == "AB\x07"  # octal and hex escapes
    assert field_value(b"\\q") == "q"  # any other escaped character is itself
    assert field_value(b"\\303\\274") == "ü"  # escapes are bytes of UTF-8, decoded afterwards


def test_tabs_and_newlines_in_values_never_split_a_row():
    line = b"odd\\tname\\nwith\\\\tab\tsecond\n"
    assert row_values(line) == ["odd\tname\nwith\\tab", "second"]
    assert list(rows([line, b"x\ty\n"], 2, "t")) == [[b"odd\\tname\\nwith\\\\tab", b"second"], [b"x", b"y"]]


def test_a_row_with_the_wrong_number_of_columns_is_refused():
    with pytest.raises(SnapshotError, match="line 2 has 3 columns, not 2"):
        list(rows([b"a\tb\n", b"a\tb\tc\n"], 2, "t"))
    with pytest.raises(SnapshotError, match="not UTF-8"):
        field_value(b"\\xff")


def test_arrays():
    assert array_value("{}") == []
    assert array_value(None) is None
    assert array_value("{Crash,HeartbeatTimeout}") == ["Crash", "HeartbeatTimeout"]
    assert array_value('{"two words",NULL,"NULL","a\\"q","b\\\\s",",",""}') == [
        "two words",
        None,
        "NULL",
        'a"q',
        "b\\s",
        ",",
        "",
    ]
    for bad in ("Crash", "{{a},{b}}", '{"open}', '{"a"b}'):
        with pytest.raises(SnapshotError):
            array_value(bad)


@pytest.mark.django_db
def test_postgresql_output_reads_back_exactly():
    """COPY of awkward texts and a text array, by the server itself, parsed here."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE copy_probe (t text, a text[], n text)")
        cursor.executemany("INSERT INTO copy_probe VALUES (%s, %s, NULL)", [(text, [text, None]) for text in AWKWARD])
        with cursor.cursor.copy("COPY copy_probe (t, a, n) TO STDOUT") as copy:
            output = b"".join(bytes(block) for block in copy)
    lines = output.splitlines(keepends=True)
    assert len(lines) == len(AWKWARD)
    parsed = [[field_value(raw) for raw in row] for row in rows(lines, 3, "copy_probe")]
    assert [row[0] for row in parsed] == AWKWARD
    assert [array_value(row[1]) for row in parsed] == [[text, None] for text in AWKWARD]
    assert {row[2] for row in parsed} == {None}
