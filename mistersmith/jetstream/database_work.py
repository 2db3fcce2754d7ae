"""Database work done off a request (the bridge's worker threads, the catch-up, the runtime probe),
and the rule that no thread holds a database connection while it waits on NATS."""

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


def release_connections() -> None:
    """Give this thread's database connections back to the pool before it waits on something else.

    A request that sends a graceful Stop waits up to 125 s for the runtime's answer; holding its
    connection meanwhile, six such requests starved a pool of six and every other page got the 503
    page. The next query takes a connection from the pool again. A connection in a transaction
    (an atomic block, or autocommit turned off) is kept: closing it would end the transaction, so
    code that must not hold one waits outside its transactions (supervision.services.request_restart).
    """
    for connection in connections.all(initialized_only=True):
        # Attributes only: asking the connection (get_autocommit) would open one where none may be.
        if connection.connection is not None and connection.autocommit and not connection.in_atomic_block:
            connection.close()
