"""Logging filters for lines that would otherwise repeat at the rate of the traffic."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class OncePerInterval(logging.Filter):
    """Lets one record per (logger, message template, first argument) through per ``seconds``.

    channels-redis logs "N of M channels over capacity in group G" at INFO for every message sent
    to a group holding a member that no longer reads (a socket whose process died, until the
    group expiry drops it): 500 frames/s made 500 identical lines a second. The first line of each
    interval passes, with how many like it were left out since the last one.
    """

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = float(seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple, float] = {}
        self._dropped: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.name, record.msg, args[-1] if args else None)
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            self._last[key] = now
            dropped = self._dropped.pop(key, 0)
            if len(self._last) > 1000:  # groups come and go: forget the oldest keys
                for old in sorted(self._last, key=self._last.__getitem__)[:500]:
                    self._last.pop(old, None)
        if dropped:
            record.msg = f"{record.msg} ({dropped} more like it in the last {self.seconds:g} s not logged)"
        return True
