"""POSTs to consumers against real loopback sockets: each failure named for what it is, the
reply read within its cap, private targets refused unless allowed."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from daemon.delivery import callback_transport, callbacks
from daemon.delivery.callbacks import Callbacks
from daemon.dev.receiver import WebhookReceiver
from tests.raw_servers import ReplyServer, TlsServer, closed_port, hanging_server

TOKEN = "tok-5ecret-in-the-url"


@pytest.fixture
async def http() -> AsyncIterator[Callbacks]:
    async with Callbacks(timeout_s=0.5) as client:
        yield client


async def failure_of(
    http: Callbacks, url: str, *, allow: bool = True
) -> tuple[httpx.HTTPError, float]:
    started = time.monotonic()
    with pytest.raises(httpx.HTTPError) as caught:
        await http.post(url, b"{}", {}, allow_private=allow)
    error = caught.value
    assert TOKEN not in str(error), "an error text must not quote the URL"
    return error, time.monotonic() - started


async def test_a_closed_port_is_a_refused_connection_not_a_timeout(
    http: Callbacks,
) -> None:
    with closed_port() as port:
        error, took = await failure_of(http, f"http://u:{TOKEN}@127.0.0.1:{port}/h?t={TOKEN}")
    assert isinstance(error, httpx.ConnectError)
    assert str(error) == "callback refused the connection (nothing listening?)"
    assert took < 0.4, "a refusal is immediate, it must not wait for the timeout"


async def test_a_name_that_does_not_resolve(http: Callbacks) -> None:
    # .invalid never resolves (RFC 6761); the resolver answers it without asking a DNS server.
    error, took = await failure_of(http, f"http://consumer.invalid/h?token={TOKEN}")
    assert isinstance(error, httpx.ConnectError)
    assert str(error) == "callback host does not resolve (Name or service not known)"
    assert took < 0.4
    guarded, _ = await failure_of(http, "http://consumer.invalid/h", allow=False)
    assert str(guarded) == str(error)


async def test_an_untrusted_certificate_is_a_tls_failure(http: Callbacks) -> None:
    with TlsServer() as server:
        error, _ = await failure_of(http, f"https://127.0.0.1:{server.port}/h?t={TOKEN}")
    assert isinstance(error, httpx.ConnectError)
    # OpenSSL 3 says "self-signed certificate", older ones "self signed certificate".
    assert str(error).startswith("TLS failure: callback's certificate is not trusted (self")


async def test_https_to_a_plain_http_server_is_a_tls_failure(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    error, _ = await failure_of(http, f"https://127.0.0.1:{port}/h?t={TOKEN}")
    assert isinstance(error, httpx.ConnectError)
    assert str(error).startswith("TLS failure: handshake with callback failed ("), str(error)


async def test_a_server_that_never_answers_is_a_timeout(http: Callbacks) -> None:
    with hanging_server() as port:
        error, took = await failure_of(http, f"http://127.0.0.1:{port}/h?t={TOKEN}")
    assert isinstance(error, httpx.ReadTimeout)
    assert str(error) == "callback did not answer within 0.5s"
    assert 0.45 <= took < 2


async def test_the_reply_is_kept_to_1_kib_and_read_to_64_kib_at_most(
    http: Callbacks,
) -> None:
    size = 10 * 1024 * 1024
    with ReplyServer(status=200, body_size=size) as server:
        answer = await http.post(f"http://127.0.0.1:{server.port}/h", b"", {}, allow_private=True)
        await _until(lambda: bool(server.sent))
    assert answer.reply == "x" * callbacks.REPLY_KEPT
    # What the server could send: our 64 KiB, aiohttp's paused buffer and the kernel's.
    assert server.sent[0] < 1024 * 1024, f"{server.sent[0]} of {size} bytes were taken"


async def test_a_redirect_is_not_followed(http: Callbacks, receiver: WebhookReceiver) -> None:
    """A consumer that moved answers 301/302: the POST is not re-sent elsewhere (that would
    hand a signed body to a URL nobody configured); the status is recorded and retried."""
    with ReplyServer(status=200) as elsewhere:
        receiver.reply(302, location=f"http://127.0.0.1:{elsewhere.port}/stolen")
        answer = await http.post(f"{receiver.base_url}/h", b"{}", {}, allow_private=True)
        await asyncio.sleep(0.2)
        assert answer.status == 302
        assert elsewhere.sent == [], "the redirect's target got nothing"
    assert len(receiver.attempts) == 1


async def test_a_consumers_cookie_is_never_sent_back(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    receiver.reply(200, headers={"set-cookie": "session=abc; Path=/"})
    for _ in range(2):
        answer = await http.post(f"{receiver.base_url}/h", b"{}", {}, allow_private=True)
        assert answer.status == 200
    assert [a.headers.get("cookie") for a in receiver.attempts] == [None, None]


async def test_a_short_reply_is_kept_whole(http: Callbacks) -> None:
    with ReplyServer(status=422, body_size=20, fill=b"quota exceeded; ") as server:
        answer = await http.post(f"http://127.0.0.1:{server.port}/h", b"", {}, allow_private=True)
    assert (answer.status, answer.reply) == (422, "quota exceeded; quot")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("[::ffff:127.0.0.1]", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("[fd00::1]", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("100.64.0.1", "a shared (CGNAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("[::]", "an unspecified address"),
    ],
)
async def test_a_guarded_ip_literal_is_refused_before_connecting(
    http: Callbacks, host: str, kind: str
) -> None:
    error, took = await failure_of(http, f"http://{host}:9/h?t={TOKEN}", allow=False)
    address = ipaddress.ip_address(host.strip("[]"))
    assert str(error) == (
        f"refused: callback address {address} is {kind}; set allow_private_targets = true "
        "to allow it"
    )
    assert took < 0.2


async def test_loopback_is_refused_unless_allowed(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    url = f"{receiver.base_url}/hooks/x"
    error, _ = await failure_of(http, url, allow=False)
    assert str(error).startswith("refused: callback address 127.0.0.1 is a loopback address")
    assert receiver.attempts == []
    response = await http.post(url, b"{}", {}, allow_private=True)
    assert response.status == 200
    assert len(receiver.attempts) == 1


async def test_userinfo_becomes_basic_auth(http: Callbacks, receiver: WebhookReceiver) -> None:
    url = receiver.base_url.replace("http://", f"http://hook:{TOKEN}@") + "/h"
    assert (await http.post(url, b"{}", {}, allow_private=True)).status == 200
    expected = base64.b64encode(f"hook:{TOKEN}".encode()).decode()
    assert receiver.attempts[0].headers["authorization"] == f"Basic {expected}"


async def test_a_post_carries_its_headers_and_body_and_asks_for_a_plain_reply(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    answer = await http.post(
        f"{receiver.base_url}/h?token={TOKEN}",
        b'{"a": 1}',
        {"content-type": "application/json", "webhook-id": "msg_1"},
        allow_private=True,
    )
    assert (answer.status, answer.reply) == (200, "")
    [attempt] = receiver.attempts
    assert attempt.body == b'{"a": 1}'
    assert attempt.headers["webhook-id"] == "msg_1"
    assert attempt.headers["content-type"] == "application/json"
    assert attempt.headers["user-agent"] == "pipedrive-triggers"
    # The reply is kept as text, so it is asked for uncompressed.
    assert attempt.headers["accept-encoding"] == "identity"
    assert "authorization" not in attempt.headers


async def test_a_name_resolving_to_loopback_is_refused_after_resolution(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    error, _ = await failure_of(http, f"http://localhost:{port}/h", allow=False)
    assert isinstance(error, callback_transport.RefusedTarget)
    assert isinstance(error, httpx.ConnectError)
    assert str(error) == (
        "refused: callback resolves to 127.0.0.1, a loopback address; "
        "set allow_private_targets = true to allow it"
    )
    assert receiver.attempts == []
    response = await http.post(f"http://localhost:{port}/h", b"{}", {}, allow_private=True)
    assert response.status == 200


async def test_guarded_and_allowed_requests_share_no_connection(
    http: Callbacks, receiver: WebhookReceiver
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/h"
    assert (await http.post(url, b"{}", {}, allow_private=True)).status == 200
    error, _ = await failure_of(http, url, allow=False)  # the pooled connection is not reused
    assert str(error).startswith("refused: callback resolves to 127.0.0.1")


async def _until(check: object, timeout_s: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not true in time")
