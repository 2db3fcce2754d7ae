"""Secrets kept on disk (var/secret_key, var/admin_password), private from their first byte.

Writing the file and then narrowing its mode left a window in which any local user could read
it (the umask's default 0644); a file created here is opened with ``O_CREAT | O_EXCL`` and mode
0600, so it never exists with wider permissions, and an existing file (or a link planted in its
place) is never written through. No Django imports: the settings use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600


def create_private_file(path: Path, text: str) -> bool:
    """Write ``text`` to a new file readable by its owner only; False when the path already exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), PRIVATE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return True


def replace_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in place of whatever is there, through a new 0600 file renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    create_private_file(temporary, text)
    os.replace(temporary, path)


def tighten(path: Path) -> None:
    """Narrow an existing secret's mode to 0600 (a file from an older install may be 0644)."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(PRIVATE_MODE)


def read_or_create_private(path: Path, make_text: str) -> str:
    """The secret kept at ``path``, created with ``make_text`` (mode 0600) when absent."""
    create_private_file(path, make_text)
    tighten(path)
    return path.read_text(encoding="utf-8").strip()
