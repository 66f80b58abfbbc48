"""Transient database failures (busy past its lock timeout, full, read-only, restarting) are
waited out, not raised out of the delivery loop or the polls: one tenacity policy for every
database call the delivery loop makes, `known` to tell such a failure from a bug, and an
`Outage` per role (delivery, polling) that logs one line when an outage begins and one when
it ends."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from daemon import clock as clock_module

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0

READ_ONLY = "database is read-only"
FULL = "database or disk is full"
BUSY = "database is busy (locked by another writer)"
RESTARTING = "database is restarting"
UNREACHABLE = "database connection lost or refused"
DISK_ERROR = "disk I/O error"
CANNOT_OPEN = "database file cannot be opened"

# SQLite's primary result codes (an extended one, SQLITE_READONLY_DBMOVED, maps by its prefix).
_SQLITE = {
    "SQLITE_READONLY": READ_ONLY,
    "SQLITE_FULL": FULL,
    "SQLITE_BUSY": BUSY,
    "SQLITE_LOCKED": BUSY,
    "SQLITE_IOERR": DISK_ERROR,
    "SQLITE_CANTOPEN": CANNOT_OPEN,
}
# PostgreSQL's SQLSTATEs, then their classes (08: connection exception).
_POSTGRES = {
    "25006": READ_ONLY,  # read_only_sql_transaction: a standby, default_transaction_read_only
    "53100": FULL,  # disk_full
    "57P01": RESTARTING,  # admin_shutdown
    "57P02": RESTARTING,  # crash_shutdown
    "57P03": RESTARTING,  # cannot_connect_now: starting up or in recovery
    "40001": BUSY,  # serialization_failure
    "40P01": BUSY,  # deadlock_detected
    "55P03": BUSY,  # lock_not_available
    "08": UNREACHABLE,
    "53": "database is out of resources (memory or connections)",
}
_ERRNO = {errno.ENOSPC: FULL, errno.EROFS: READ_ONLY}


def known(error: BaseException) -> str | None:
    """What a transient database failure is, as an operator would say it ("database is
    read-only"), or None for anything else (a bug, a schema mismatch): those deserve a
    traceback, these do not."""
    original = error.orig if isinstance(error, DBAPIError) else error
    name = getattr(original, "sqlite_errorname", None)
    if isinstance(name, str):
        return _SQLITE.get("_".join(name.split("_")[:2]))
    state = getattr(original, "sqlstate", None)
    if isinstance(state, str):
        return _POSTGRES.get(state) or _POSTGRES.get(state[:2])
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return UNREACHABLE
    if isinstance(error, OperationalError) and hasattr(original, "sqlstate"):
        return UNREACHABLE  # psycopg without a SQLSTATE: the server cannot be reached
    if isinstance(original, OSError) and not isinstance(error, DBAPIError):
        if isinstance(original, ConnectionError | TimeoutError):
            return UNREACHABLE
        return _ERRNO.get(original.errno or 0)
    return None


def reason(error: BaseException) -> str:
    """`known(error)`, else the error's type and the driver's first line."""
    if (said := known(error)) is not None:
        return said
    original = error.orig if isinstance(error, DBAPIError) else error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0]}" if lines else type(original).__name__


class Outage:
    """Whether the database is failing now for one role (delivery, polling), so that an
    outage is logged once when it begins and once when it ends, not at every retry."""

    def __init__(self) -> None:
        self.error: str | None = None

    def failed(self, what: str, error: BaseException) -> None:
        if self.error is None:
            self.error = f"{what}: {reason(error)}"
            logger.warning(
                "database unavailable while %s; retrying until it is back",
                self.error,
                extra={"action": "database.unavailable"},
            )

    def recovered(self) -> None:
        if self.error is not None:
            logger.info(
                "database available again (it failed while %s)",
                self.error,
                extra={"action": "database.recovered"},
            )
            self.error = None


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    outage: Outage,
    give_up: Callable[[], bool] = lambda: False,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> T:
    """Run `operation` until it succeeds, backing off on database errors; raises the last one
    only when `give_up()` says so (e.g. shutting down past the grace)."""

    def before_sleep(state: RetryCallState) -> None:
        if state.outcome is not None and (error := state.outcome.exception()) is not None:
            outage.failed(what, error)

    def stop(_state: RetryCallState) -> bool:
        return give_up()

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((SQLAlchemyError, OSError)),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        stop=stop,
        before_sleep=before_sleep,
        sleep=clock.sleep,
        reraise=True,
    ):
        with attempt:
            result = await operation()
    outage.recovered()
    return result
