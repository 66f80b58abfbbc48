"""The database schema as SQLAlchemy Core tables; alembic migrations must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from daemon import times

# Named constraints, so migrations on PostgreSQL and SQLite agree on names.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class _SqliteDateTime(sqlite.DATETIME):
    """SQLite's DATETIME, read as ever, written from the text `Timestamp` formats itself."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class Timestamp(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite, which keeps no zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SqliteDateTime(timezone=True)  # type: ignore[no-untyped-call]
        return self.impl_instance

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a Timestamp column")
        value = value.astimezone(UTC)
        if dialect.name != "sqlite":
            return value
        # The very text SQLite's DATETIME writes ('2024-05-01 12:00:00.000000', naive UTC),
        # at a third of its cost: it built a dict for every value of every row.
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return times.as_utc(value)


subscription_state = Table(
    "subscription_state",
    metadata,
    Column("subscription", String(200), primary_key=True),
    Column("account", String(200), nullable=False),
    Column("trigger", String(50), nullable=False),
    # Nothing before `start_at` fires; `id_floor` is the highest id that existed then (so a
    # deal created later with a backdated add_time is still an addition).
    Column("start_at", Timestamp(), nullable=False),
    Column("id_floor", BigInteger, nullable=True),
    # The update_time up to which this subscription has read its feed: behind the feed's
    # watermark only while it backfills.
    Column("position", Timestamp(), nullable=False),
    Column("started_at", Timestamp(), nullable=False),
    Column("status", String(20), nullable=False),  # "ok" or "failing"
    Column("last_error", Text, nullable=True),
    Column("last_poll_at", Timestamp(), nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
)

# One change feed per (account, object type): every subscription on it reads one listing.
feeds = Table(
    "feeds",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("object_type", String(50), primary_key=True),
    # The newest update_time read and committed: the next listing starts a look-back before.
    Column("watermark", Timestamp(), nullable=False),
    Column("max_id", BigInteger, nullable=True),  # highest id listed, for new subscriptions
    Column("started_at", Timestamp(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_poll_at", Timestamp(), nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
)

# What the feed last saw of each item: enough to tell a change (content hash), number it
# (`version`, so A -> B -> A -> B is three changes), name it for its event id (`lineage`: a
# digest of every version seen, see change_feed.lineage) and build `previous` (`snapshot`).
item_states = Table(
    "item_states",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("object_type", String(50), primary_key=True),
    Column("item_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("update_time", Timestamp(), nullable=True),
    Column("snapshot", Text, nullable=False),
    Column("first_seen_at", Timestamp(), nullable=False),
    Column("seen_at", Timestamp(), nullable=False),
    Column("lineage", String(64), nullable=False),
)

# This database's identity, one row made at its first poll: part of every change's event id,
# so a fresh database never repeats an id another one sent (a restored backup keeps it).
installation = Table(
    "installation",
    metadata,
    Column("singleton", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("id", String(32), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
)

# Where an outbox row stands (procrastinate keeps its jobs the same way): pending until it is
# delivered or dead-lettered. Replaying a dead letter is an UPDATE back to pending, purging it a
# DELETE, and it keeps its detection time (`created_at`) throughout.
STATE_PENDING = "pending"
STATE_DELIVERED = "delivered"
STATE_DEAD = "dead"
OUTBOX_STATES = (STATE_PENDING, STATE_DELIVERED, STATE_DEAD)

# The outbox: one row per event (`event_id` unique), whatever its state.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subscription", String(200), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("item_id", String(64), nullable=False),  # a lead's id is a UUID
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp(), nullable=False),  # when it was detected
    Column("state", String(10), nullable=False),  # one of OUTBOX_STATES
    Column("next_attempt_at", Timestamp(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_until", Timestamp(), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Timestamp(), nullable=True),
    Column("dead_at", Timestamp(), nullable=True),
)

# The claim walks pending rows by due time; delivered and dead rows stay out of this index, so
# a claim costs the same however many have been delivered.
Index(
    "ix_deliveries_pending_due",
    deliveries.c.next_attempt_at,
    postgresql_where=deliveries.c.state == STATE_PENDING,
    sqlite_where=deliveries.c.state == STATE_PENDING,
)
# `dead-letters list` and purge read dead rows by subscription and time of death.
Index(
    "ix_deliveries_dead",
    deliveries.c.subscription,
    deliveries.c.dead_at,
    postgresql_where=deliveries.c.state == STATE_DEAD,
    sqlite_where=deliveries.c.state == STATE_DEAD,
)
# Retention prunes the oldest delivered rows in small batches.
Index(
    "ix_deliveries_delivered",
    deliveries.c.delivered_at,
    postgresql_where=deliveries.c.state == STATE_DELIVERED,
    sqlite_where=deliveries.c.state == STATE_DELIVERED,
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", Timestamp(), nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("reply", Text, nullable=True),  # the reply body's first 1 KiB
)

# A subscription's delivery switch and health, as the operator and the daemon set them. No row
# means enabled and healthy. `disabled_at` is set by `subscriptions disable` or a 410 Gone;
# `paused_at` after `pause_after` consecutive failures, with the next probe at `probe_at`.
# `endpoint`: the sha256 of the callback_url it was judged on (never the URL: it may hold a
# token); a pause or a 410 recorded for another URL does not hold a new one back.
subscription_health = Table(
    "subscription_health",
    metadata,
    Column("subscription", String(200), primary_key=True),
    Column("disabled_at", Timestamp(), nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("paused_at", Timestamp(), nullable=True),
    Column("pause_reason", Text, nullable=True),
    Column("probe_at", Timestamp(), nullable=True),
    Column("probe_interval_s", Float, nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
    Column("endpoint", String(64), nullable=True),  # None: recorded before revision 0009
    # Shared by every replica (docs/webhooks.md, "Several replicas"): consecutive failed
    # attempts behind `pause_after`, the lease of a paused subscription's one probe in flight,
    # and `max_per_second`'s recent starts (`model.start_window` writes and reads them).
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("probe_until", Timestamp(), nullable=True),
    Column("starts", Text, nullable=True),
)

# How many of a subscription's `per_subscription_concurrency` slots each replica (`holder`, one
# per delivery loop) holds, until when: a replica starts POSTs only within its slots, and the
# slots of all holders never add up to more than the cap (see `db.delivery_slots`).
delivery_slots = Table(
    "delivery_slots",
    metadata,
    Column("subscription", String(200), primary_key=True),
    Column("holder", String(200), primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("held_until", Timestamp(), nullable=False),
)

# Per account and UTC day: Pipedrive calls, their tokens (the spec's x-token-cost) and the
# waits for the rate limit, added up by the running daemon every few seconds (see
# `account_usage`), read by `status --accounts`; and the company's daily token budget as
# Pipedrive's headers last said it that day (`x-daily-ratelimit-token-remaining`, `-limit`,
# when seen: None until then, and when Pipedrive does not send them).
account_usage = Table(
    "account_usage",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("calls", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("rate_limit_waits", BigInteger, nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
    Column("daily_tokens_remaining", BigInteger, nullable=True),
    Column("daily_tokens_limit", BigInteger, nullable=True),
    Column("daily_seen_at", Timestamp(), nullable=True),
)

# Instant mode (see `daemon.instant`): per account, the webhook the daemon registered at
# Pipedrive (`webhook_id`, None when there is none), the URL and basic-auth credentials it was
# registered with (here, so every replica's ingress checks the same ones; the password is a
# secret, never logged or shown), how the last registration went (`state`: one of
# INSTANT_STATES, `last_error` why not), and the nudges the ingress received today (UTC).
INSTANT_PENDING = "pending"  # credentials made, not registered yet
INSTANT_REGISTERED = "registered"
INSTANT_FAILED = "failed"
INSTANT_REMOVED = "removed"  # the account no longer wants one, and ours was deleted
INSTANT_STATES = (INSTANT_PENDING, INSTANT_REGISTERED, INSTANT_FAILED, INSTANT_REMOVED)

instant_webhooks = Table(
    "instant_webhooks",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("webhook_id", BigInteger, nullable=True),
    Column("subscription_url", Text, nullable=True),
    Column("http_auth_user", String(100), nullable=False),
    Column("http_auth_password", String(100), nullable=False),
    Column("state", String(20), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("registered_at", Timestamp(), nullable=True),
    Column("checked_at", Timestamp(), nullable=True),
    Column("last_nudge_at", Timestamp(), nullable=True),
    Column("nudges_day", String(10), nullable=True),  # YYYY-MM-DD, UTC: the day counted
    Column("nudges_today", BigInteger, nullable=False),
    # Changes a listing found that no webhook call announced (Pipedrive banned or lost it).
    Column("unannounced", BigInteger, nullable=False, server_default="0"),
    Column("unannounced_at", Timestamp(), nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
)


# The running replicas: one row per `run` process, beaten every third of its lease (see
# `db.instances`), marked stopped on a clean exit. `status` tells running from gone by age.
instances = Table(
    "instances",
    metadata,
    Column("instance", String(200), primary_key=True),  # [cluster] instance
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Timestamp(), nullable=False),
    Column("heartbeat_at", Timestamp(), nullable=False),
    Column("stopped_at", Timestamp(), nullable=True),
    Column("lease_s", Float, nullable=False),  # its [cluster] lease: gone after two
    Column("config_fingerprint", String(64), nullable=True),  # a rollout half done shows
    Column("code_revision", String(32), nullable=True),  # the newest migration it knows
)

# Who polls an account (`account:<name>`), or runs the singleton jobs (`singleton`), until
# when. `epoch` grows with every change of holder: a page commit made under an older epoch is
# refused (see `db.leases`), so a replica that lost a lease can no longer move a feed.
leases = Table(
    "leases",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("holder", String(200), nullable=True),  # None: released
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", Timestamp(), nullable=True),
    Column("acquired_at", Timestamp(), nullable=True),
)

# Instant mode's nudges for accounts another replica holds: the ingress that took Pipedrive's
# call upserts one row per (account, object type), so a flood is still one row, and the
# account's lease holder deletes and reads its accounts' rows about once a second.
instant_nudges = Table(
    "instant_nudges",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("object_type", String(50), primary_key=True),
    Column("nudged_at", Timestamp(), nullable=False),  # the latest nudge relayed
)

# Delete calls for accounts another replica holds, with the item each names: a delete fires
# a `*.deleted` trigger once confirmed, which takes its item's id (see `instant.deletions`).
instant_deletes = Table(
    "instant_deletes",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("object_type", String(50), primary_key=True),
    Column("entity_id", String(64), primary_key=True),
    Column("nudged_at", Timestamp(), nullable=False),
)

# ... and the other calls that name their item (a create, a change): the holder reads those
# items by id where that is cheaper than a listing (see `polling.poller.Poller.read`).
instant_changes = Table(
    "instant_changes",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("object_type", String(50), primary_key=True),
    Column("entity_id", String(64), primary_key=True),
    Column("nudged_at", Timestamp(), nullable=False),
)
