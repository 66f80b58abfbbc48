"""instant_changes: create and change calls relayed between replicas, with their item

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08

A nudge relayed as its feed only (`instant_nudges`) makes the holder list the feed (10
tokens); relayed with its item, the holder reads that item by id (1 token), as it does the
calls its own ingress takes. One row per (account, object type, item), drained by the
account's holder; `instant_nudges` still carries the calls that name no item.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instant_changes",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "account", "object_type", "entity_id", name=op.f("pk_instant_changes")
        ),
    )


def downgrade() -> None:
    op.drop_table("instant_changes")
