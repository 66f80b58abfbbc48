"""aiosqlite without a thread round trip for the calls that never touch the database file.

aiosqlite runs every sqlite3 call on its worker thread, and SQLAlchemy's adapter makes four
of them per statement: open a cursor, execute, fetch the rows, close the cursor. Each round
trip hands the GIL to the worker and back, and on a backlog (claims and outcome batches of a
few statements each) those hand-overs were a tenth of the daemon's CPU. Opening and closing a
cursor only allocate and free: they run here, in the caller's thread. Execute and fetch, which
may wait on SQLite's locks (`busy_timeout`) or read pages, stay on the worker so the event
loop never blocks on the file. The connection must be opened with `check_same_thread=False`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any


def inline_cursor_calls(driver_connection: Any) -> None:
    """Make an `aiosqlite.Connection` open and close cursors in the calling thread."""
    queued: Callable[..., Any] = driver_connection._execute
    database: sqlite3.Connection = driver_connection._conn

    async def execute(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        owner = getattr(function, "__self__", None)
        name = getattr(function, "__name__", "")
        if (owner is database and name == "cursor") or (
            isinstance(owner, sqlite3.Cursor) and name == "close"
        ):
            return function(*args, **kwargs)
        return await queued(function, *args, **kwargs)

    driver_connection._execute = execute
