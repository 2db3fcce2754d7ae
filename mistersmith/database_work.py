"""Database work done off a request: on the bridge's worker threads, the catch-up, the runtime probe."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections, connections

T = TypeVar("T")


def database_work(function: Callable[..., T]) -> Callable[..., T]:
    """Run ``function`` as a unit of database work on a worker thread, like a request: the
    thread's connection goes back to the pool afterwards instead of staying checked out."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return wrapper
