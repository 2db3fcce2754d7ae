"""The password hasher: Django's PBKDF2, with the database connection given back while it hashes.

A login hashes the password (PBKDF2, 1,000,000 iterations: about 0.35 s of CPU, seconds while
other requests share the core) after reading the user, and the request kept its pooled database
connection meanwhile. 200 users logging in at once (bench/load_admin.py) held all 30 connections
of a worker with hashing and the next logins waited 10 s for one, then got the 503 page. The
connection goes back to the pool before the hash (unless a transaction holds it); the next query
of the request takes one again. Same algorithm name and encoding: stored hashes are unchanged.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections


def release_idle_connections() -> None:
    """Give this thread's open connections that no transaction holds back to the pool."""
    for connection in connections.all(initialized_only=True):
        # Attributes only: asking the connection (get_autocommit) would open one where none is.
        if connection.connection is not None and connection.autocommit and not connection.in_atomic_block:
            connection.close()


class ConnectionReleasingPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 (``pbkdf2_sha256``) that hashes without holding a database connection."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        release_idle_connections()
        return super().encode(password, salt, iterations)
