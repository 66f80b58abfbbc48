"""Each account's webhook at Pipedrive as the database keeps it: the credentials every
replica's ingress checks, the registration's state, and the nudges received.

The password is a `SecretStr` from the moment it is read: no repr, log line or error shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy import bindparam, case, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.db import database, write_lock
from daemon.db.tables import INSTANT_PENDING, instant_webhooks


@dataclass(frozen=True)
class Registration:
    """One account's row."""

    account: str
    webhook_id: int | None
    subscription_url: str | None
    http_auth_user: str
    http_auth_password: SecretStr
    state: str  # one of tables.INSTANT_STATES
    last_error: str | None
    registered_at: datetime | None
    checked_at: datetime | None
    last_nudge_at: datetime | None
    nudges_day: str | None
    nudges_today: int
    unannounced: int = 0  # changes found only by reconciliation, since the row was made
    unannounced_at: datetime | None = None


def _registration(row: RowMapping) -> Registration:
    return Registration(
        account=row["account"],
        webhook_id=row["webhook_id"],
        subscription_url=row["subscription_url"],
        http_auth_user=row["http_auth_user"],
        http_auth_password=SecretStr(row["http_auth_password"]),
        state=row["state"],
        last_error=row["last_error"],
        registered_at=row["registered_at"],
        checked_at=row["checked_at"],
        last_nudge_at=row["last_nudge_at"],
        nudges_day=row["nudges_day"],
        nudges_today=row["nudges_today"],
        unannounced=row["unannounced"],
        unannounced_at=row["unannounced_at"],
    )


async def load(engine: AsyncEngine, account: str) -> Registration | None:
    query = select(instant_webhooks).where(instant_webhooks.c.account == account)
    async with engine.connect() as connection:
        row = (await connection.execute(query)).mappings().one_or_none()
    return None if row is None else _registration(row)


async def load_all(engine: AsyncEngine) -> dict[str, Registration]:
    """Every account's row, by account (for `status` and the ingress)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(instant_webhooks))).mappings().all()
    return {row["account"]: _registration(row) for row in rows}


async def ensure_credentials(
    engine: AsyncEngine, account: str, user: str, password: SecretStr, now: datetime
) -> Registration:
    """The account's row, made with these credentials when it has none yet: two replicas
    racing agree on the first one's, as every replica's ingress must."""
    async with write_lock.begin(engine) as connection:
        statement = database.dialect_insert(connection, instant_webhooks).values(
            account=account,
            http_auth_user=user,
            http_auth_password=password.get_secret_value(),
            state=INSTANT_PENDING,
            nudges_today=0,
            updated_at=now,
        )
        await connection.execute(statement.on_conflict_do_nothing(index_elements=["account"]))
        query = select(instant_webhooks).where(instant_webhooks.c.account == account)
        return _registration((await connection.execute(query)).mappings().one())


async def record(
    engine: AsyncEngine,
    account: str,
    *,
    state: str,
    webhook_id: int | None,
    subscription_url: str | None,
    last_error: str | None,
    now: datetime,
    registered: bool = False,
) -> None:
    """How a check or registration went (`registered`: a webhook was created just now). An
    account without a row (it never had credentials) has nothing to record."""
    values: dict[str, object] = {
        "state": state,
        "webhook_id": webhook_id,
        "subscription_url": subscription_url,
        "last_error": last_error,
        "checked_at": now,
        "updated_at": now,
    }
    if registered:
        values["registered_at"] = now
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(instant_webhooks).where(instant_webhooks.c.account == account).values(values)
        )


@dataclass(frozen=True)
class NudgeTally:
    """Calls from Pipedrive one replica took for an account since its last flush."""

    count: int
    last_at: datetime


async def add_unannounced(engine: AsyncEngine, account: str, count: int, now: datetime) -> None:
    """Changes a listing found that no webhook call announced: added to the account's count."""
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(instant_webhooks)
            .where(instant_webhooks.c.account == account)
            .values(unannounced=instant_webhooks.c.unannounced + count, unannounced_at=now)
        )


async def add_nudges(engine: AsyncEngine, tallies: Mapping[str, NudgeTally], now: datetime) -> None:
    """Add each account's tally to its row: `nudges_today` counts the UTC day of `now` (a new
    day starts again from this tally), `last_nudge_at` only moves forwards. Increments, so
    every replica adds its own; an account without a row has nothing to count."""
    if not tallies:
        return
    day = times.format_date(times.as_utc(now).date())
    table = instant_webhooks
    count = bindparam("b_count", type_=table.c.nudges_today.type)
    last_at = bindparam("b_last_at", type_=table.c.last_nudge_at.type)
    statement = (
        update(table)
        .where(table.c.account == bindparam("b_account"))
        .values(
            nudges_today=case(
                (table.c.nudges_day == day, table.c.nudges_today + count), else_=count
            ),
            nudges_day=day,
            last_nudge_at=case(
                (table.c.last_nudge_at.is_(None), last_at),
                (table.c.last_nudge_at < last_at, last_at),
                else_=table.c.last_nudge_at,
            ),
        )
    )
    rows = [
        {"b_account": account, "b_count": tally.count, "b_last_at": tally.last_at}
        for account, tally in sorted(tallies.items())
    ]
    async with write_lock.begin(engine) as connection:
        await connection.execute(statement, rows)  # one executemany for every account
