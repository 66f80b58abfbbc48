"""`db.sqlite_hops` reaches into aiosqlite's private `_execute` and `_conn`: if an aiosqlite
release routes cursors another way, this fails instead of the daemon quietly paying every
thread hop again."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sqlalchemy

from daemon.db import database


class _Recording:
    """aiosqlite's queue to its worker thread, noting what each job calls."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.jobs: list[str] = []

    def put_nowait(self, item: Any) -> None:
        function = item[1]
        inner = function.func if isinstance(function, functools.partial) else function
        self.jobs.append(getattr(inner, "__name__", repr(inner)))
        self._queue.put_nowait(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


async def test_sqlite_cursors_open_and_close_without_a_thread_hop(tmp_path: Path) -> None:
    engine = database.create_engine(f"sqlite:///{tmp_path / 'hops.db'}")
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            recording = _Recording(driver._tx)
            driver._tx = recording
            rows = (await connection.execute(sqlalchemy.text("SELECT 41 + 1"))).all()
            driver._tx = recording._queue
        assert rows == [(42,)]
        assert recording.jobs, "no job reached aiosqlite's worker: its queue moved"
        assert not {"cursor", "close"} & set(recording.jobs), recording.jobs
    finally:
        await engine.dispose()
