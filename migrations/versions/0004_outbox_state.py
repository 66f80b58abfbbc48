"""one outbox table with a state column: dead letters move into `deliveries`

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Every row gets a `state` (pending, delivered, dead), and the rows of `dead_letters` come over
as dead rows with their `created_at` and `dead_at`. Where a dead letter's event was detected
again and is pending (possible before this revision), the pending row wins: it is live work.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_COPIED = (
    "event_id",
    "subscription",
    "event_type",
    "item_id",
    "body",
    "created_at",
    "attempts",
    "last_status",
    "last_error",
    "dead_at",
)


def _partial_indexes() -> None:
    for name, columns, state in (
        ("ix_deliveries_pending_due", ["next_attempt_at"], "pending"),
        ("ix_deliveries_dead", ["subscription", "dead_at"], "dead"),
        ("ix_deliveries_delivered", ["delivered_at"], "delivered"),
    ):
        where = sa.text(f"state = '{state}'")
        op.create_index(
            name, "deliveries", columns, unique=False, postgresql_where=where, sqlite_where=where
        )


def upgrade() -> None:
    op.drop_index("ix_deliveries_pending_due", table_name="deliveries")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("dead_at", _TS, nullable=True))
    op.execute(
        "UPDATE deliveries SET state = CASE WHEN delivered_at IS NULL "
        "THEN 'pending' ELSE 'delivered' END"
    )
    columns = ", ".join(_COPIED)
    op.execute(
        f"INSERT INTO deliveries ({columns}, state, next_attempt_at) "
        f"SELECT {columns}, 'dead', dead_at FROM dead_letters "
        "WHERE event_id NOT IN (SELECT event_id FROM deliveries)"
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("state", existing_type=sa.String(length=10), nullable=False)
    _partial_indexes()
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letters_subscription")
    op.drop_table("dead_letters")


def downgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subscription", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("event_id", name=op.f("uq_dead_letters_event_id")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index("ix_dead_letters_subscription", ["subscription"], unique=False)
    columns = ", ".join(_COPIED)
    op.execute(
        f"INSERT INTO dead_letters ({columns}) SELECT {columns} FROM deliveries "
        "WHERE state = 'dead'"
    )
    op.execute("DELETE FROM deliveries WHERE state = 'dead'")
    for name in ("ix_deliveries_pending_due", "ix_deliveries_dead", "ix_deliveries_delivered"):
        op.drop_index(name, table_name="deliveries")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("dead_at")
        batch_op.drop_column("state")
    where = sa.text("delivered_at IS NULL")
    op.create_index(
        "ix_deliveries_pending_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=where,
        sqlite_where=where,
    )
