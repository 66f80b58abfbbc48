"""Opening the database: URLs, engines (SQLite in WAL mode, PostgreSQL), and migrations."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import migrations
from daemon import redact
from daemon.db import sqlite_hops
from daemon.errors import DatabaseError, SchemaOutOfDate, SchemaTooNew

SQLITE_BUSY_TIMEOUT_S = 30
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def parse_url(url: str) -> sqlalchemy.URL:
    """The config's database URL parsed; one that is no URL is a DatabaseError saying what
    one looks like (never a traceback from SQLAlchemy's parser)."""
    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise DatabaseError(
            "database url: not a database URL such as sqlite:///path/to/file.db or "
            f"postgresql+psycopg://user@host/dbname (got {redact.url(url)!r})"
        ) from None


def _driver_url(url: str, *, asynchronous: bool) -> str:
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        driver = "aiosqlite" if asynchronous else "pysqlite"
    elif backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise DatabaseError(
                f"database url: use the psycopg 3 driver, postgresql+psycopg:// "
                f"(got {parsed.drivername}://)"
            )
        driver = "psycopg"
    else:
        raise DatabaseError(
            f"database url: only sqlite and postgresql are supported (got {backend})"
        )
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    return _driver_url(url, asynchronous=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the poller and the delivery loop write while `status` reads; NORMAL sync is
    # durable against a killed process (only a power cut can lose the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def _on_connect(engine: sqlalchemy.Engine) -> None:
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)


def _sqlite_cursors_inline(dbapi_connection: Any, _record: Any) -> None:
    sqlite_hops.inline_cursor_calls(dbapi_connection.driver_connection)


# PostgreSQL connections per engine: polls of thousands of feeds, claims and outcomes share
# them; SQLAlchemy's default (5, and 10 more on demand) made polls wait for one at 1,000
# accounts.
POOL_SIZE = 10
POOL_OVERFLOW = 20


def create_engine(url: str, *, pool_size: int = POOL_SIZE) -> AsyncEngine:
    driver_url = _driver_url(url, asynchronous=True)
    # A SQLite file has no server to drop a connection, so no ping: on aiosqlite a ping is
    # round trips through its thread at every checkout (each claim, each outcome batch).
    # `sqlite_hops` opens and closes cursors outside that thread, hence check_same_thread.
    options: dict[str, Any] = {
        "pool_pre_ping": False,
        "connect_args": {"check_same_thread": False},
    }
    if parse_url(url).get_backend_name() == "postgresql":
        options = {
            "pool_pre_ping": True,
            "pool_size": pool_size,
            "max_overflow": POOL_OVERFLOW if pool_size > 1 else 1,
        }
    engine = create_async_engine(driver_url, **options)
    _on_connect(engine.sync_engine)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_cursors_inline)
    return engine


def dialect_insert(connection: Any, table: Any) -> Any:
    """The INSERT of the connection's dialect: SQLite's and PostgreSQL's both have
    `on_conflict_do_update` and `on_conflict_do_nothing`, the generic one neither."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def create_sync_engine(url: str, *, pooled: bool = True) -> sqlalchemy.Engine:
    options: dict[str, Any] = {} if pooled else {"poolclass": sqlalchemy.pool.NullPool}
    engine = sqlalchemy.create_engine(sync_url(url), **options)
    _on_connect(engine)
    return engine


# alembic is imported where used: it costs a third of a second that action commands never need.


def _alembic_config(url: str) -> Any:
    import alembic.config

    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def describe(url: str) -> str:
    """The database as an operator knows it: the SQLite file, or PostgreSQL's host and name
    (never the password)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "(in memory)"
    host = parsed.host or "local socket"
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql {host}{port}/{parsed.database or ''}"


def _reason(error: BaseException) -> str:
    """The driver's own first line (psycopg says "Connection refused" or "database "x" does
    not exist"; sqlite "unable to open database file"), without SQLAlchemy's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip() or type(original).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # psycopg: 'connection failed: connection to server at "h" (...), port 5432 failed: X'
    first = lines[0] if lines else text
    return " ".join(first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").split())


@contextlib.contextmanager
def opening(url: str) -> Iterator[None]:
    """Turn a database that cannot be opened into one DatabaseError line naming it."""
    try:
        yield
    except DatabaseError:
        raise
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as error:
        reason = _reason(error)
        if parse_url(url).get_backend_name() == "sqlite" and "unable to open" in reason:
            reason += " (does the directory exist, and may this user write to it?)"
        raise DatabaseError(f"cannot open database {describe(url)}: {reason}") from None


def probe(url: str) -> None:
    """Open a SQLite file once, synchronously, so one that cannot be opened fails here as a
    DatabaseError, before aiosqlite's worker thread exists (its failure would otherwise race
    the closing event loop and print a thread traceback). Other databases pass through."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    engine = create_sync_engine(url)
    try:
        with opening(url), engine.connect():
            pass
    finally:
        engine.dispose()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def _refuse_downgrade(current: str | None) -> None:
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(current, head_revision())


# pg_advisory_lock's key for migrations: the first 8 bytes of sha256("pipedrive-triggers
# migrate"), signed.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"pipedrive-triggers migrate").digest()[:8], signed=True
)


def upgrade(url: str) -> None:
    """Bring the database to the newest revision (idempotent); refuse one that a newer
    release wrote."""
    import alembic.command

    with opening(url):
        if parse_url(url).get_backend_name() == "sqlite" and parse_url(url).database:
            Path(parse_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_sync_engine(url, pooled=False)
        try:
            with engine.connect() as connection:
                # Replicas starting at once: one migrates, the others wait here, then find
                # nothing left to do. (SQLite has one `run` at a time; see instance_lock.)
                if connection.dialect.name == "postgresql":
                    connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
                    connection.commit()
                try:
                    _refuse_downgrade(_current_revision(connection))
                    connection.commit()
                    alembic.command.upgrade(_alembic_config(url), "head")
                finally:
                    if connection.dialect.name == "postgresql":
                        connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
                        connection.commit()
        finally:
            engine.dispose()


def _current_revision(connection: sqlalchemy.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def check_revision(engine: AsyncEngine) -> None:
    """Refuse to run on a database that migrations have not brought up to date."""
    with opening(engine.url.render_as_string(hide_password=False)):
        async with engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
    head = head_revision()
    _refuse_downgrade(current)
    if current != head:
        raise SchemaOutOfDate(current, head)


@contextlib.asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database that opens and is at the newest revision, disposed on the way
    out; one that does not is a DatabaseError (or SchemaOutOfDate / SchemaTooNew)."""
    probe(url)
    engine = create_engine(url)
    try:
        await check_revision(engine)
        yield engine
    finally:
        await engine.dispose()
