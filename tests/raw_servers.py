"""Loopback sockets that misbehave on purpose: a closed port, a server that never answers, a
TLS server nobody trusts, and one that answers with a body of any size."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

SELF_SIGNED_PEM = Path(__file__).parent / "data" / "self_signed.pem"
CHUNK = 64 * 1024


def _listening(backlog: int = 16) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connection to it is refused at once, and nothing
    else can take the port while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextlib.contextmanager
def hanging_server() -> Iterator[int]:
    """Connections complete (the kernel accepts them into the backlog), no answer ever comes."""
    sock = _listening()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class _Acceptor:
    """Accepts connections in a thread and hands each to `handle` until stopped."""

    def __init__(self) -> None:
        self._sock = _listening()
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    self.handle(connection)

    def __enter__(self) -> _Acceptor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class TlsServer(_Acceptor):
    """Speaks TLS with a self-signed certificate, which no default trust store accepts."""

    def __init__(self) -> None:
        super().__init__()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(SELF_SIGNED_PEM)

    def handle(self, connection: socket.socket) -> None:
        with self._context.wrap_socket(connection, server_side=True):
            pass  # the client aborts the handshake


class ReplyServer(_Acceptor):
    """Answers every request with `status` and a body of `body_size` bytes of `fill` (sent
    as fast as the client reads), recording how many body bytes it managed to send."""

    def __init__(self, status: int = 200, body_size: int = 0, fill: bytes = b"x") -> None:
        super().__init__()
        self.status = status
        self.body_size = body_size
        self.fill = fill
        self.sent: list[int] = []

    def handle(self, connection: socket.socket) -> None:
        # A small send buffer, so what the kernel holds for a client that stopped reading is
        # small beside the body: `sent` then tells how much the client took.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
        request = b""
        while b"\r\n\r\n" not in request:
            data = connection.recv(CHUNK)
            if not data:
                return
            request += data
        head, _, body = request.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += connection.recv(CHUNK)
        connection.sendall(
            f"HTTP/1.1 {self.status} Whatever\r\ncontent-length: {self.body_size}\r\n"
            "connection: close\r\n\r\n".encode()
        )
        sent = 0
        chunk = (self.fill * CHUNK)[:CHUNK]
        try:
            while sent < self.body_size:
                piece = chunk[: self.body_size - sent]
                connection.sendall(piece)
                sent += len(piece)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
