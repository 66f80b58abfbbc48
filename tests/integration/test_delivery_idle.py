"""An idle delivery loop costs one indexed read per poll, whatever the number of
subscriptions: no claim planned over all of them, no health read, until something is due."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from daemon.config import DeliveryConfig
from daemon.db import database, health_store, outbox
from daemon.dev.local_server import serve
from tests.delivery_harness import delivering, queue, subscription, until


async def test_an_idle_loop_only_asks_whether_anything_is_due(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"claim": 0, "load": 0, "any_due": 0}

    def counting(name: str, function: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        outbox, "claim_within_limits", counting("claim", outbox.claim_within_limits)
    )
    monkeypatch.setattr(outbox, "any_due", counting("any_due", outbox.any_due))
    monkeypatch.setattr(health_store, "load", counting("load", health_store.load))
    delivered: list[bytes] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        delivered.append(dict(scope["headers"]).get(b"webhook-id", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    engine = database.create_engine(database_url)
    try:
        with serve(receiver) as server:
            subs = [subscription(f"s{i}", f"{server.base_url}/{i}") for i in range(20)]
            async with delivering(engine, subs, DeliveryConfig()):
                await asyncio.sleep(2.2)  # four idle polls and more
                assert calls["claim"] == 1 and calls["load"] == 1, calls  # the first claim's
                assert calls["any_due"] >= 3, calls
                await queue(engine, "s3", [1])  # no wake-up: the idle poll finds it
                await until(lambda: delivered, timeout_s=5)
        assert calls["claim"] >= 2 and calls["load"] >= 2, calls
    finally:
        await engine.dispose()
