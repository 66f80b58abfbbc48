"""each delivery attempt keeps the first 1 KiB of the consumer's reply

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26

Written beside another branch's 0002: when both are merged, `down_revision` becomes 0002's
revision id so the history stays one line.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_column("reply")
