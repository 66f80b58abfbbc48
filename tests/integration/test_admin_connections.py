"""The admin listener's connections are bounded: idle and slow clients are closed within the
request timeout, no more than `max_connections` are held, `/healthz` answers through a flood,
and running out of file descriptors is logged once, not a traceback per failed accept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from daemon import metrics
from daemon.db import database
from daemon.serving import connections
from daemon.status import admin_page, listener
from tests.integration.test_admin import admin_config

FAST = connections.Limits(max_connections=50, request_timeout_s=1.0)
MARGIN_S = 1.5  # on a loaded machine, over the timeout


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def admin(tmp_path: Path, limits: connections.Limits) -> AsyncIterator[listener.Admin]:
    config = admin_config(f"sqlite:///{tmp_path / 'admin.db'}")
    engine = database.create_engine(config.database.url)
    try:
        async with listener.serving(
            config, engine, metrics.PrometheusMetrics(), [], bool, limits=limits
        ) as state:
            assert state is not None
            yield state
    finally:
        await engine.dispose()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server ends the connection (its reply, if any, is read and dropped)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionResetError:
        pass
    return True


async def test_idle_connections_are_capped_and_closed_while_healthz_answers(
    tmp_path: Path,
) -> None:
    async with admin(tmp_path, FAST) as state:
        host, port = state.address
        before = open_fds()
        streams = [await asyncio.open_connection(host, port) for _ in range(300)]
        for _, writer in streams[:30]:  # slowloris: a head that never ends
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await asyncio.sleep(0.2)  # the server accepts them all (and closes the surplus)
        held_by_server = open_fds() - before - len(streams)
        assert held_by_server <= FAST.max_connections + 2, held_by_server

        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=0.5) as client:
            answer = await client.get("/healthz")
        assert (answer.status_code, answer.text) == (200, "ok\n")

        # Every one of them, the last opened included, within the timeout (and a margin).
        closing = [closed_by_server(reader) for reader, _ in streams]
        await asyncio.wait_for(asyncio.gather(*closing), FAST.request_timeout_s + MARGIN_S)
        for _, writer in streams:
            writer.close()
        for _ in range(50):
            await asyncio.sleep(0.05)  # our own ends close at the loop's next turns
            if open_fds() <= before + 2:
                break
        assert open_fds() <= before + 2, "the server holds none of them any more"


async def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_deadline(tmp_path: Path) -> None:
    async with admin(tmp_path, FAST) as state:
        reader, writer = await asyncio.open_connection(*state.address)
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    await asyncio.sleep(0.2)
                    writer.write(b"a")
                    await writer.drain()

        trickling = asyncio.create_task(trickle())
        try:
            await asyncio.wait_for(closed_by_server(reader), FAST.request_timeout_s + MARGIN_S)
        finally:
            trickling.cancel()
            writer.close()
        assert loop.time() - started >= FAST.request_timeout_s - 0.1, "not before the deadline"


async def test_keep_alive_connections_serve_until_idle(tmp_path: Path) -> None:
    async with admin(tmp_path, FAST) as state:
        host, port = state.address
        reader, writer = await asyncio.open_connection(host, port)
        request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        for _ in range(3):  # each within the timeout of the previous answer: one connection
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"ok\n"), 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.sleep(FAST.request_timeout_s * 0.6)
        await asyncio.wait_for(closed_by_server(reader), FAST.request_timeout_s + MARGIN_S)
        writer.close()


async def test_a_replay_form_sent_too_slowly_is_dropped_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with admin(tmp_path, FAST) as state:
        host, port = state.address
        reader, writer = await asyncio.open_connection(host, port)
        form = f"{admin_page.CSRF_FIELD}={state.csrf_token}&subscription=won".encode()
        writer.write(
            f"POST /replay HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form) + 100}\r\n\r\n".encode()
            + form
        )
        await asyncio.wait_for(closed_by_server(reader), FAST.request_timeout_s + MARGIN_S)
        writer.close()
        await asyncio.sleep(0.1)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert not [r for r in caplog.records if getattr(r, "action", "") == "admin.replayed"]


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that takes longer than the request timeout to answer."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def test_an_answer_that_takes_longer_than_the_timeout_is_not_cut() -> None:
    limits = connections.Limits(request_timeout_s=0.3)
    server = uvicorn.Server(
        uvicorn.Config(
            slow_app, log_config=None, lifespan="off", loop="none", **limits.uvicorn_options()
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        port = sock.getsockname()[1]
        async with httpx.AsyncClient(timeout=3) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/")
        assert (answer.status_code, answer.text) == (200, "done")
    finally:
        server.should_exit = True
        await task
        sock.close()


def lowest_free_fd() -> int:
    taken = {int(name) for name in os.listdir("/proc/self/fd")}
    return min(set(range(len(taken) + 1)) - taken)


async def test_running_out_of_file_descriptors_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with admin(tmp_path, FAST) as state:
        # Connected, queued by the kernel, not yet accepted: the loop has not run since.
        waiting = [socket.create_connection(state.address) for _ in range(20)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd(), hard))
        try:
            await asyncio.sleep(1.5)  # asyncio retries the accepts every second
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        failed = [r for r in caplog.records if getattr(r, "action", "") == "admin.accept_failed"]
        assert len(failed) == 1, [r.getMessage() for r in caplog.records]
        assert "Too many open files" in failed[0].getMessage()
        assert not failed[0].exc_info
        assert not [r for r in caplog.records if r.name == "asyncio"], "no traceback per accept"
        # With descriptors back, the queued connections are accepted, and closed when idle.
        for client in waiting:
            client.settimeout(FAST.request_timeout_s + 1 + MARGIN_S)
            assert await asyncio.to_thread(client.recv, 1) == b""
            client.close()


async def test_accept_failures_make_episodes_and_other_reports_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    listening = socket.socket()
    other = socket.socket()
    try:
        failures = connections.AcceptFailures(listening, quiet_s=0.2)
        emfile = OSError(24, "Too many open files")
        ours = {"message": connections.ACCEPT_FAILED, "exception": emfile, "socket": listening}
        theirs = {**ours, "socket": other}
        with failures.installed(loop):
            for _ in range(100):
                loop.call_exception_handler(ours)
            loop.call_exception_handler(theirs)
            loop.call_exception_handler({"message": "something else"})
            await asyncio.sleep(0.4)
            loop.call_exception_handler(ours)  # a second episode
        assert [context["message"] for context in seen] == [
            connections.ACCEPT_FAILED,
            "something else",
        ]
        assert seen[0]["socket"] is other
        actions = [getattr(r, "action", None) for r in caplog.records]
        assert actions == ["admin.accept_failed", "admin.accept_recovered", "admin.accept_failed"]
        assert "100 failed" in caplog.records[1].getMessage()
    finally:
        loop.set_exception_handler(previous)
        listening.close()
        other.close()


@pytest.mark.parametrize(
    ("failures", "episodes"),
    [
        ([0, 1, 2, 5, 9], [0]),
        ([0, 10], [0]),
        ([0, 11], [0, 11]),
        ([0, 3, 6, 9, 12, 25, 26], [0, 25]),
    ],
)
def test_episodes(failures: list[int], episodes: list[int]) -> None:
    found = connections.Episodes(quiet_s=10)
    begun = [moment for moment in failures if found.failed(moment)]
    assert begun == episodes
    assert not found.ended(failures[-1] + 10), "quiet for 10 s: not yet over"
    assert found.ended(failures[-1] + 11)
    assert not found.ended(failures[-1] + 20), "ended once"
