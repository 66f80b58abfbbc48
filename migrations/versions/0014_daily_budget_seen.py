"""account_usage: the daily token budget Pipedrive's headers last reported that day

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10

`x-daily-ratelimit-token-remaining` and `x-daily-ratelimit-token-limit`, with the time they were
seen, kept per account and UTC day next to the day's calls and tokens (None until seen, and
while Pipedrive does not send them), so `status --accounts` shows them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_usage") as batch:
        batch.add_column(sa.Column("daily_tokens_remaining", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("daily_tokens_limit", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("daily_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_usage") as batch:
        batch.drop_column("daily_seen_at")
        batch.drop_column("daily_tokens_limit")
        batch.drop_column("daily_tokens_remaining")
