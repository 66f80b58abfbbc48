"""CPU a webhook POST costs the daemon: `Callbacks.post` against `httpx.AsyncClient` on the
same transport.

The daemon's POSTs are `httpx.Request`s handed to `CallbackTransport` (`delivery/callbacks.py`),
without `httpx.AsyncClient`'s per-request layers. This measures what that saves: N signed
bodies of about 1.1 kB POSTed, C at a time, to `backlog.py`'s receiver (an aiohttp server in
its own process, answering 200 with an empty body), and this process's CPU time per POST:

* `client`: `httpx.AsyncClient(transport=CallbackTransport())` and `.stream("POST", ...)`, the
  reply read with `read_reply`: how the daemon posted before;
* `callbacks`: `Callbacks.post`, how it posts now.

Rounds alternate the two; the figure is the median CPU per POST and the ratio of the medians.

    PYTHONPATH=. .venv/bin/python bench/post_cost.py   # 5,000 POSTs, 64 at a time, 5 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from bench import backlog
from daemon.delivery import callback_transport, callbacks
from daemon.delivery.signing import Signer

BODY = json.dumps({"type": "deal.added", "data": {"title": "x" * 1100}})
WARM_UP = 300


async def _cpu_per_post(mode: str, url: str, posts: int, concurrency: int) -> float:
    """This process's CPU seconds per POST, over `posts` POSTs after a warm-up."""
    signer = Signer(SecretStr(backlog.SECRET))
    body = BODY.encode()
    gate = asyncio.Semaphore(concurrency)
    async with (
        callbacks.Callbacks(10.0) as posting,
        httpx.AsyncClient(
            transport=callback_transport.CallbackTransport(),
            timeout=10.0,
            follow_redirects=False,
            headers={"user-agent": "pipedrive-triggers"},
        ) as client,
    ):

        async def by_client(headers: dict[str, str]) -> None:
            async with client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                extensions=callback_transport.ALLOW_PRIVATE_TARGETS,
            ) as response:
                await callbacks.read_reply(response)

        async def by_callbacks(headers: dict[str, str]) -> None:
            await posting.post(url, body, headers, allow_private=True)

        post: Callable[[dict[str, str]], Awaitable[None]] = (
            by_client if mode == "client" else by_callbacks
        )

        async def one(n: int) -> None:
            async with gate:
                await post(signer.headers(f"msg_{n}", BODY, datetime.now(UTC)))

        await asyncio.gather(*(one(n) for n in range(WARM_UP)))
        started = time.process_time()
        await asyncio.gather(*(one(n) for n in range(posts)))
        return (time.process_time() - started) / posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    receiver_args = backlog.parse_args([])  # the receiver's own options are its defaults
    with backlog.served("receiver", receiver_args, backlog.BENCH_STATS) as receiver:
        url = receiver + backlog.HOOK_PATH
        runs: dict[str, list[float]] = {"client": [], "callbacks": []}
        for _ in range(args.rounds):
            for mode, seconds in runs.items():
                seconds.append(asyncio.run(_cpu_per_post(mode, url, args.posts, args.concurrency)))
    for mode, seconds in runs.items():
        shown = " ".join(f"{s * 1e6:.0f}" for s in seconds)
        print(f"{mode:10s} median {statistics.median(seconds) * 1e6:4.0f} us CPU a POST ({shown})")
    ratio = statistics.median(runs["callbacks"]) / statistics.median(runs["client"])
    print(f"callbacks / client: {ratio:.2f}x")
    print(
        f"{args.posts:,} POSTs of {len(BODY):,} B, {args.concurrency} at a time, {args.rounds} "
        "alternating rounds; reproduce: PYTHONPATH=. .venv/bin/python bench/post_cost.py"
    )


if __name__ == "__main__":
    main()
