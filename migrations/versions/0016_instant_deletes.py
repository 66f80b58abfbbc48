"""instant_deletes: delete calls relayed between replicas, with the item they name

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A relayed nudge names only its feed (`instant_nudges`), which is all a listing needs; a delete
must name its item, since only a confirmed delete fires a `*.deleted` trigger and no listing
ever shows it. One row per (account, object type, item), drained by the account's holder.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instant_deletes",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "account", "object_type", "entity_id", name=op.f("pk_instant_deletes")
        ),
    )


def downgrade() -> None:
    op.drop_table("instant_deletes")
