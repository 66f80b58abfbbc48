"""instant mode: nudges relayed to the replica that holds the account

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09

Any replica's ingress takes Pipedrive's webhook; the account's lease holder reads the change.
A nudge for an account another replica holds is upserted here, one row per (account, object
type), and the holder deletes and acts on its accounts' rows about once a second.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instant_nudges",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "object_type", name=op.f("pk_instant_nudges")),
    )


def downgrade() -> None:
    op.drop_table("instant_nudges")
