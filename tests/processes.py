"""The command line as a process, started in milliseconds instead of a second.

The acceptance tests start `python -m daemon` a few hundred times, and each start spent about
a second of CPU importing the same libraries: two thirds of the suite's CPU on a 2-core
machine. Here a zygote process imports the package once and forks one child per command. Each
child is a real process of its own (its own pid, signals, exit status, stdin/stdout/stderr,
environment and working directory) running the same `main` that `python -m daemon` runs; only
the interpreter's start and the imports are shared, as with a preloading server (gunicorn's
`--preload`). The zygote holds no thread, event loop, engine or socket but its own when it
forks, so a child starts as clean as a new interpreter after the same imports.

`start(...)` is `subprocess.Popen`'s part the tests use; `run(...)` is `subprocess.run`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROG_NAME = "python -m daemon"  # what click calls the program when run as `python -m daemon`
MAX_MESSAGE = 1 << 20
READY_TIMEOUT_S = 60.0


class Child:
    """A forked command: `subprocess.Popen`'s `pid`, `poll`, `wait`, `send_signal`,
    `terminate`, `kill` and `returncode`. The zygote reaps it and sends its exit status."""

    def __init__(self, connection: socket.socket, pid: int) -> None:
        self._connection = connection
        self.pid = pid
        self.returncode: int | None = None
        self.args = [PROG_NAME]

    def _read_status(self, timeout: float | None) -> int | None:
        self._connection.settimeout(timeout)
        try:
            message = self._connection.recv(MAX_MESSAGE)
        except (TimeoutError, BlockingIOError):
            return None
        if not message:
            raise RuntimeError(f"the zygote went away before process {self.pid} ended")
        self.returncode = int(json.loads(message)["returncode"])
        self._connection.close()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._read_status(timeout) is None:
            raise subprocess.TimeoutExpired(PROG_NAME, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        self._connection.close()  # a test that never waited for it: no ResourceWarning

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.poll() is None:
            self.kill()
            self.wait()


class _Zygote:
    """One per test process, started at its first use and ended with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._path = ""

    def _ensure(self) -> str:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self._path
            directory = tempfile.mkdtemp(prefix="pdt-zygote-")
            self._path = os.path.join(directory, "socket")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.processes", self._path, str(os.getpid())],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not os.path.exists(self._path):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test zygote did not start")
                time.sleep(0.01)
            return self._path

    def start(
        self, args: list[str], *, env: dict[str, str], cwd: Path, stdout: int, stderr: int
    ) -> Child:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        connection.connect(self._ensure())
        request = json.dumps({"args": args, "env": env, "cwd": str(cwd)}).encode()
        with open(os.devnull, "rb") as stdin:
            socket.send_fds(connection, [request], [stdin.fileno(), stdout, stderr])
        reply = connection.recv(MAX_MESSAGE)
        return Child(connection, int(json.loads(reply)["pid"]))


ZYGOTE = _Zygote()


def start(
    args: list[str],
    *,
    stdout: int,
    stderr: int,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Child:
    """`subprocess.Popen([sys.executable, "-m", "daemon", *args], ...)`, forked."""
    return ZYGOTE.start(args, env=dict(os.environ if env is None else env), cwd=cwd,
                        stdout=stdout, stderr=stderr)  # fmt: skip


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
    text=True, ...)`, forked: on a timeout the child is killed and TimeoutExpired raised."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = start(args, stdout=out.fileno(), stderr=err.fileno(), env=env, cwd=cwd)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            [PROG_NAME, *args],
            code,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


# -- the zygote's side ---------------------------------------------------------------------


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become `python -m daemon ARGS` and never return."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote's own; the rest is Python's
        import random

        random.seed()  # a child must not share its parent's stream
        sys.argv = [PROG_NAME, *request["args"]]
        from daemon.cli.main import main

        try:
            main(args=request["args"], prog_name=PROG_NAME)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _serve(path: str, parent: int) -> None:
    import daemon.cli.main
    import daemon.service.lifecycle  # noqa: F401  (what `run` imports too)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # exists only once it accepts
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                connection, _ = listener.accept()
                message, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE, 3)
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    connection.close()
                    selector.close()
                    signal.set_wakeup_fd(-1)
                    os.close(wake_read)
                    os.close(wake_write)
                    _child(json.loads(message), fds)
                for fd in fds:
                    os.close(fd)
                connection.sendall(json.dumps({"pid": pid}).encode())
                waiting[pid] = connection
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
        while waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            connection = waiting.pop(pid, None)
            if connection is not None:
                with contextlib.suppress(OSError):
                    connection.sendall(
                        json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode()
                    )
                connection.close()
    for pid in waiting:  # the tests are gone: leave nothing running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
