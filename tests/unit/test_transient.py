"""Which database failures are an outage (one line, no traceback) and which are bugs."""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import InternalError, OperationalError, ProgrammingError

from daemon.db import transient


def sqlite_error(*statements: str) -> sqlite3.Error:
    """A real SQLite error: the last statement fails on an in-memory database."""
    connection = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            connection.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError("the statements did not fail")


def wrapped(cls: type[OperationalError], original: Exception) -> Exception:
    return cls("INSERT INTO feeds ...", {}, original)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            wrapped(
                OperationalError,
                sqlite_error(
                    "CREATE TABLE t (x)", "PRAGMA query_only = 1", "INSERT INTO t VALUES (1)"
                ),
            ),
            transient.READ_ONLY,
        ),
        (
            wrapped(
                OperationalError,
                sqlite_error(
                    "PRAGMA max_page_count = 2",
                    "CREATE TABLE t (x)",
                    "INSERT INTO t VALUES (zeroblob(100000))",
                ),
            ),
            transient.FULL,
        ),
        (wrapped(OperationalError, sqlite_error("SELECT * FROM nowhere")), None),  # a bug
        (wrapped(InternalError, psycopg.errors.ReadOnlySqlTransaction("ro")), transient.READ_ONLY),
        (wrapped(OperationalError, psycopg.errors.DiskFull("full")), transient.FULL),
        (wrapped(OperationalError, psycopg.errors.AdminShutdown("bye")), transient.RESTARTING),
        (wrapped(OperationalError, psycopg.errors.CannotConnectNow("up")), transient.RESTARTING),
        (wrapped(OperationalError, psycopg.errors.DeadlockDetected("dl")), transient.BUSY),
        (wrapped(OperationalError, psycopg.OperationalError("refused")), transient.UNREACHABLE),
        (wrapped(ProgrammingError, psycopg.errors.UndefinedTable("no")), None),  # a bug
        (OSError(errno.ENOSPC, "No space left on device"), transient.FULL),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), transient.UNREACHABLE),
        (KeyError("id"), None),
    ],
)
def test_known_outages_are_named_and_anything_else_is_not(
    error: Exception, said: str | None
) -> None:
    assert transient.known(error) == said


def test_an_outage_is_said_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    outage = transient.Outage()
    full = OSError(errno.ENOSPC, "No space left on device")
    outage.recovered()  # nothing to end
    for _ in range(3):
        outage.failed("polling main/deals", full)
    outage.recovered()
    outage.recovered()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "database unavailable while polling main/deals: database or disk is full; "
            "retrying until it is back",
        ),
        ("INFO", "database available again (it failed while polling main/deals: database or "
         "disk is full)"),
    ]  # fmt: skip
    assert not [r for r in caplog.records if r.exc_info]
