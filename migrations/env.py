"""Alembic environment: runs migrations against the URL the daemon passes in."""

from __future__ import annotations

from alembic import context

from daemon.db import database, tables

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database url given to the migrations")


def run() -> None:
    engine = database.create_sync_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=tables.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
