"""shared delivery limits: failures, the one probe in flight and recent starts per subscription;
the delivery slots each replica holds

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08

Several replicas deliver from one database, so what used to be counted in one process's memory
is counted here: `subscription_health` gains the consecutive failures behind `pause_after`, the
lease of a paused subscription's one probe in flight (`probe_until`) and the start times that
`max_per_second` counts (`starts`); `delivery_slots` says how many of a subscription's
`per_subscription_concurrency` slots each replica holds, until when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_health", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("probe_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("starts", sa.Text(), nullable=True))
    op.create_table(
        "delivery_slots",
        sa.Column("subscription", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription", "holder", name=op.f("pk_delivery_slots")),
    )


def downgrade() -> None:
    op.drop_table("delivery_slots")
    with op.batch_alter_table("subscription_health", schema=None) as batch_op:
        batch_op.drop_column("starts")
        batch_op.drop_column("probe_until")
        batch_op.drop_column("failures")
