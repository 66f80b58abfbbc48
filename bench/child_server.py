"""A helper server the benchmarks run in a process of its own (a sandbox, a receiver): the
loopback socket is bound here and inherited, so no other process can take the port between
choosing and serving it; the child is stopped (terminated, killed after 10 s) on the way out.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping

import httpx

STOP_WAIT_S = 10.0


@contextlib.contextmanager
def child_server(
    command: Callable[[int], list[str]],
    ready_path: str,
    what: str,
    *,
    start_timeout_s: float,
    poll_s: float = 0.1,
    backlog: int = 1024,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `command(fd)` (fd: the listening socket it serves), and yield (base URL, process)
    once `GET ready_path` answers 2xx; `what` names it in the error if it never does."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        command(listener.fileno()),
        pass_fds=(listener.fileno(),),
        stdin=subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    listener.close()  # the child holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                httpx.get(base + ready_path, timeout=5.0).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {what} process did not start") from None
                time.sleep(poll_s)
        yield base, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill what has not ended within `STOP_WAIT_S`; close its stdin (the
    children watch it to exit with their parent)."""
    process.terminate()
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdin is not None:
        process.stdin.close()
