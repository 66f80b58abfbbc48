"""subscription_health: the operator's switch (enable/disable) and a paused endpoint's probe

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscription_health",
        sa.Column("subscription", sa.String(length=200), nullable=False),
        sa.Column("disabled_at", _TS, nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("paused_at", _TS, nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("probe_at", _TS, nullable=True),
        sa.Column("probe_interval_s", sa.Float(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("subscription", name=op.f("pk_subscription_health")),
    )


def downgrade() -> None:
    op.drop_table("subscription_health")
