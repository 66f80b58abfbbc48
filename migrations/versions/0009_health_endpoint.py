"""subscription_health.endpoint: which callback_url a pause or a 410 was judged on

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A subscription given a new `callback_url` starts healthy: its row now records a fingerprint
(sha256) of the URL its health was judged on, never the URL itself. Rows already there have
none and are taken to be the configured URL's; the daemon stamps them when it next reads them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscription_health", sa.Column("endpoint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_health", schema=None) as batch_op:
        batch_op.drop_column("endpoint")
