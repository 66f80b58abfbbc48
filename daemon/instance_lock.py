"""One `run` per SQLite database: a second daemon on the same file would poll everything
twice (doubling the API spend) and fight over SQLite's single writer.

The lock is `flock(2)` on `<database>.lock` beside the file, held for the process's life. The
kernel releases it when the process ends however it ends (SIGKILL, a crash), so no stale lock
is ever left to clean by hand, and `status` and other readers are not blocked, as an
exclusive SQLite locking mode would block them. The file holds the holder's pid for the
message. PostgreSQL needs no lock: several daemons may share it (claims use SKIP LOCKED).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from daemon.errors import DatabaseError, DatabaseInUse

LOCK_SUFFIX = ".lock"


def lock_path(url: str) -> Path | None:
    """The lock file for a SQLite file database, None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(f"{parsed.database}{LOCK_SUFFIX}")


@contextlib.contextmanager
def hold(url: str) -> Iterator[None]:
    """Hold the database's lock until the block ends, or raise DatabaseInUse at once."""
    path = lock_path(url)
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise DatabaseError(
            f"cannot open database {path.with_suffix('')}: cannot create its lock file "
            f"{path} ({error.strerror}; does the directory exist, and may this user write to it?)"
        ) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            raise DatabaseInUse(
                str(make_url(url).database), str(path), f"pid {holder or 'unknown'}"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def is_held(url: str) -> bool:
    """Whether a `run` holds the database's lock now (for commands that must not run beside
    one)."""
    try:
        with hold(url):
            return False
    except DatabaseInUse:
        return True
