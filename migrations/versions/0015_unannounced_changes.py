"""instant_webhooks: changes found only by reconciliation (no webhook call announced them)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

How many changes a listing found that Pipedrive's webhook did not announce, and when the last
was found, per account, so `status` shows them whichever replica found them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instant_webhooks") as batch:
        batch.add_column(
            sa.Column("unannounced", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("unannounced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instant_webhooks") as batch:
        batch.drop_column("unannounced_at")
        batch.drop_column("unannounced")
