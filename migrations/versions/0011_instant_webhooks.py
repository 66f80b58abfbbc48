"""instant mode: each account's Pipedrive webhook, its credentials and state, and nudge counts

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

One row per account with instant mode: the id of the webhook the daemon registered at
Pipedrive, the URL and basic-auth credentials it was registered with (kept here so every
replica's ingress knows them), whether the last registration worked (and why not), and the
nudges the ingress received (the ingress reads and writes those columns).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instant_webhooks",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("webhook_id", sa.BigInteger(), nullable=True),
        sa.Column("subscription_url", sa.Text(), nullable=True),
        sa.Column("http_auth_user", sa.String(length=100), nullable=False),
        sa.Column("http_auth_password", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nudges_day", sa.String(length=10), nullable=True),
        sa.Column("nudges_today", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_instant_webhooks")),
    )


def downgrade() -> None:
    op.drop_table("instant_webhooks")
