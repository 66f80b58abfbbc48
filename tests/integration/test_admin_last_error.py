"""The admin page's "Last error" says what `status` says: a consumer failing its deliveries
shows on both, not only a failing poll."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from daemon import metrics
from daemon.db import database, tables
from daemon.polling import plan
from daemon.status import listener, snapshot
from tests.integration.test_admin import admin_config, free_port, letter

ERROR = "callback returned 503 Service Unavailable"


async def test_the_page_shows_the_delivery_error_status_shows(database_url: str) -> None:
    now = datetime.now(UTC)
    port = free_port()
    config = admin_config(database_url, listen=f"127.0.0.1:{port}")
    retrying = [
        letter(f"msg_{n}", "won", now)
        | {
            "state": tables.STATE_PENDING,
            "dead_at": None,
            "attempts": 8,
            "last_status": 503,
            "last_error": ERROR,
            "next_attempt_at": now + timedelta(minutes=5),
        }
        for n in range(3)
    ]
    dead = [letter(f"msg_{n}", "won", now - timedelta(hours=1)) for n in (7, 8)]
    engine = database.create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(tables.deliveries.insert(), retrying + dead)
        row = (await snapshot.gather(config, engine, now)).subscriptions[0]
        assert row["last_delivery_error"] == ERROR
        recorder = metrics.PrometheusMetrics()
        async with listener.serving(config, engine, recorder, plan.feeds(config), lambda: True):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                page = await client.get("/")
        assert page.status_code == 200, page.text
        found = re.search(r'<tr data-subscription="won">(.*?)</tr>', page.text, re.S)
        assert found, page.text
        cells = re.findall(r"<td[^>]*>(.*?)</td>", found[1], re.S)
        assert ERROR in cells[9], cells  # the "Last error" column
    finally:
        await engine.dispose()
