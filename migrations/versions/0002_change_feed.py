"""change feed: one feed per (account, object type), item states, string item ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Carries today's subscriptions over: each one's id mark becomes its `id_floor` (every item
above it is an addition, so nothing added while the daemon was stopped is missed) and the
feed starts reading at the subscriptions' last poll (so a delivered item is not re-read
as new beyond the look-back, and a re-read one keeps its webhook-id, which dedupes).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


class _Feed:
    # A plain class: alembic loads this file outside sys.modules, where dataclasses fail.
    def __init__(self, watermark: datetime, max_id: int | None, started_at: datetime) -> None:
        self.watermark = watermark
        self.max_id = max_id
        self.started_at = started_at


def _object_type(trigger: str) -> str:
    # The only triggers before this revision: deal.added, deal.added.legacy, activity.added.
    return "activities" if trigger.startswith("activity.") else "deals"


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _db_time(value: datetime, dialect: str) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if dialect == "sqlite" else value


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.create_table(
        "feeds",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("watermark", _TS, nullable=False),
        sa.Column("max_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_poll_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "object_type", name=op.f("pk_feeds")),
    )
    op.create_table(
        "item_states",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("update_time", _TS, nullable=True),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "object_type", "item_id", name=op.f("pk_item_states")),
    )

    old = sa.table(
        "subscription_state",
        sa.column("subscription", sa.String),
        sa.column("account", sa.String),
        sa.column("trigger", sa.String),
        sa.column("mark_id", sa.BigInteger),
        sa.column("started_at", _TS),
        sa.column("last_poll_at", _TS),
    )
    rows = bind.execute(sa.select(old)).all()
    now = datetime.now(UTC)
    feeds: dict[tuple[str, str], _Feed] = {}
    for row in rows:
        key = (row.account, _object_type(row.trigger))
        started = _aware(row.started_at) or now
        read_until = _aware(row.last_poll_at) or started
        feed = feeds.setdefault(key, _Feed(read_until, row.mark_id, started))
        feed.watermark = min(feed.watermark, read_until)
        feed.started_at = min(feed.started_at, started)
        if row.mark_id is not None:
            feed.max_id = max(feed.max_id or 0, row.mark_id)

    with op.batch_alter_table("subscription_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("start_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("id_floor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("position", _TS, nullable=True))
    state = sa.table(
        "subscription_state",
        sa.column("subscription", sa.String),
        sa.column("start_at", _TS),
        sa.column("id_floor", sa.BigInteger),
        sa.column("position", _TS),
    )
    for row in rows:
        feed = feeds[(row.account, _object_type(row.trigger))]
        bind.execute(
            state.update()
            .where(state.c.subscription == row.subscription)
            .values(
                start_at=row.started_at,
                id_floor=row.mark_id,
                position=_db_time(feed.watermark, dialect),
            )
        )
    feeds_table = sa.table(
        "feeds",
        sa.column("account", sa.String),
        sa.column("object_type", sa.String),
        sa.column("watermark", _TS),
        sa.column("max_id", sa.BigInteger),
        sa.column("started_at", _TS),
        sa.column("status", sa.String),
        sa.column("updated_at", _TS),
    )
    for (account, object_type), feed in feeds.items():
        bind.execute(
            feeds_table.insert().values(
                account=account,
                object_type=object_type,
                watermark=_db_time(feed.watermark, dialect),
                max_id=feed.max_id,
                started_at=_db_time(feed.started_at, dialect),
                status="ok",
                updated_at=_db_time(now, dialect),
            )
        )
    with op.batch_alter_table("subscription_state", schema=None) as batch_op:
        batch_op.alter_column("start_at", existing_type=_TS, nullable=False)
        batch_op.alter_column("position", existing_type=_TS, nullable=False)
        batch_op.drop_column("mark_id")
        batch_op.drop_column("mark_add_time")

    # Events are keyed by `event_id` alone now: a deal fires once per change, not once ever.
    op.drop_index("ix_deliveries_pending_due", table_name="deliveries")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_deliveries_subscription_event_type_item_id", type_="unique")
        batch_op.alter_column(
            "item_id",
            existing_type=sa.BigInteger(),
            type_=sa.String(length=64),
            postgresql_using="item_id::varchar",
        )
    op.create_index(
        "ix_deliveries_pending_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("delivered_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL"),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.alter_column(
            "item_id",
            existing_type=sa.BigInteger(),
            type_=sa.String(length=64),
            postgresql_using="item_id::varchar",
        )


def downgrade() -> None:
    raise NotImplementedError(
        "0002 cannot be undone: item ids became strings and marks became feeds; "
        "restore the backup taken before the upgrade"
    )
