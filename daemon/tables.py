"""The database schema as SQLAlchemy Core tables; alembic migrations must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints, so migrations on PostgreSQL and SQLite agree on names.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Timestamp(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite, which keeps no zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a Timestamp column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


subscription_state = Table(
    "subscription_state",
    metadata,
    Column("subscription", String(200), primary_key=True),
    Column("account", String(200), nullable=False),
    Column("trigger", String(50), nullable=False),
    # High-water mark: the largest item id seen, and the add_time of that item.
    Column("mark_id", BigInteger, nullable=True),
    Column("mark_add_time", Timestamp(), nullable=True),
    Column("started_at", Timestamp(), nullable=False),
    Column("status", String(20), nullable=False),  # "ok" or "failing"
    Column("last_error", Text, nullable=True),
    Column("last_poll_at", Timestamp(), nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
)

# The outbox: one row per detected item, until delivered (kept) or dead-lettered (moved).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subscription", String(200), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("item_id", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("next_attempt_at", Timestamp(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_until", Timestamp(), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Timestamp(), nullable=True),
    UniqueConstraint("subscription", "event_type", "item_id"),
)

# The claim walks pending rows by due time; delivered rows (kept for status and dedupe) stay
# out of this index, so a claim costs the same however many have been delivered.
Index(
    "ix_deliveries_pending_due",
    deliveries.c.next_attempt_at,
    postgresql_where=deliveries.c.delivered_at.is_(None),
    sqlite_where=deliveries.c.delivered_at.is_(None),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", Timestamp(), nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("reply", Text, nullable=True),  # the reply body's first 1 KiB
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subscription", String(200), nullable=False, index=True),
    Column("event_type", String(50), nullable=False),
    Column("item_id", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("dead_at", Timestamp(), nullable=False),
)
