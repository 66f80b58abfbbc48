"""Transient database failures (busy past its lock timeout, full, read-only, restarting) are
waited out with backoff, not raised out of the delivery loop: one tenacity policy for every
database call the loop makes, and one log line when an outage begins and one when it ends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from daemon import clock as clock_module

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0


class Outage:
    """Whether the database is failing now, so it is logged once per outage."""

    def __init__(self) -> None:
        self.error: str | None = None

    def failed(self, what: str, error: BaseException) -> None:
        if self.error is None:
            logger.error(
                "database unavailable while %s (%s); retrying with backoff",
                what,
                type(error).__name__,
                extra={"action": "database.unavailable"},
            )
        self.error = f"{what}: {type(error).__name__}"

    def recovered(self) -> None:
        if self.error is not None:
            logger.warning("database available again", extra={"action": "database.recovered"})
            self.error = None


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    outage: Outage,
    give_up: Callable[[], bool] = lambda: False,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> T:
    """Run `operation` until it succeeds, backing off on database errors; raises the last one
    only when `give_up()` says so (e.g. shutting down past the grace)."""

    def before_sleep(state: RetryCallState) -> None:
        if state.outcome is not None and (error := state.outcome.exception()) is not None:
            outage.failed(what, error)

    def stop(_state: RetryCallState) -> bool:
        return give_up()

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((SQLAlchemyError, OSError)),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        stop=stop,
        before_sleep=before_sleep,
        sleep=clock.sleep,
        reraise=True,
    ):
        with attempt:
            result = await operation()
    outage.recovered()
    return result
