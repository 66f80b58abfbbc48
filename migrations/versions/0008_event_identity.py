"""event ids from what identifies the event: item lineages and the database's installation id

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A change's `webhook-id` was (subscription, trigger, item, version number), and version numbers
restart with a fresh database and repeat after a restored backup. It is now named by the
item's `lineage` (a digest of every version the database saw of it) and the database's
`installation` id. Rows already in the outbox keep the ids they were created with. An item
seen before this revision starts its lineage at the content last seen of it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item_states", sa.Column("lineage", sa.String(length=64), nullable=True))
    op.execute("UPDATE item_states SET lineage = content_hash")
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.alter_column("lineage", existing_type=sa.String(length=64), nullable=False)
    op.create_table(
        "installation",
        sa.Column("singleton", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("singleton", name=op.f("pk_installation")),
    )


def downgrade() -> None:
    op.drop_table("installation")
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.drop_column("lineage")
