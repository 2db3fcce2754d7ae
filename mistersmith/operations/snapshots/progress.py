"""Progress bars for the long parts of an export or import: on stderr, only when it is a
terminal and the caller did not ask for quiet (pages and tests get none)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from tqdm import tqdm


class Bar(Protocol):
    def update(self, n: float = 1) -> object: ...


class Progress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextmanager
    def bar(self, description: str, total: float | None = None, unit: str = "rows") -> Iterator[Bar]:
        scale = unit == "B"
        with tqdm(
            total=total,
            desc=description,
            unit=unit,
            unit_scale=scale,
            unit_divisor=1024 if scale else 1000,
            file=sys.stderr,
            disable=not self.enabled,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            yield bar


QUIET = Progress(enabled=False)
