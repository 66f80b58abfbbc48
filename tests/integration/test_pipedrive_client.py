"""The API client against the sandbox: retries that are safe, and none that are not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from daemon import config
from daemon.dev.sandbox import Sandbox, faults
from daemon.errors import PipedriveAuthError, PipedriveUnavailable
from daemon.pipedrive import account_usage, lookups
from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.pipedrive.lookups import LookupCache, LookupRequest
from daemon.pipedrive.rate_limit import AccountRateLimiter
from tests.conftest import API_TOKEN


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[PipedriveClient]:
    async with PipedriveClient.http_client(
        sandbox.base_url, lambda: SecretStr(API_TOKEN), timeout_s=0.5
    ) as http:
        yield PipedriveClient(
            http,
            account="main",
            limiter=AccountRateLimiter(1000),
            retry=RetryOptions(attempts=3, backoff_s=0.01, max_backoff_s=0.05),
        )


async def test_reads_are_retried_through_5xx_timeouts_and_garbage(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    sandbox.add_deal(title="survivor")
    sandbox.faults.add(status=502, count=1, path_prefix="/api/v2/deals")
    sandbox.faults.add(delay_s=1.0, count=1, path_prefix="/api/v2/deals")
    deals = await client.list_pages("/api/v2/deals", {})
    assert [deal["title"] for deal in deals] == ["survivor"]
    sandbox.faults.add(malformed=True, count=3, path_prefix="/api/v2/deals")
    with pytest.raises(PipedriveUnavailable, match="not JSON"):
        await client.list_pages("/api/v2/deals", {})


async def test_writes_are_not_repeated_after_a_5xx(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    sandbox.faults.add(status=500, count=1, path_prefix="/api/v2/deals", method="POST")
    with pytest.raises(PipedriveUnavailable):
        await client.send("POST", "/api/v2/deals", {"title": "once"})
    assert sandbox.calls_to("POST", "/api/v2/deals") == 1


async def test_rate_limited_calls_wait_and_succeed(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    sandbox.faults.add(status=429, count=1, path_prefix="/api/v2/deals")
    created = await client.send("POST", "/api/v2/deals", {"title": "after 429"})
    assert created["title"] == "after 429"


async def test_a_refused_token_is_not_retried_and_not_quoted(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    sandbox.token = "another-token"
    with pytest.raises(PipedriveAuthError) as caught:
        await client.list_pages("/api/v2/deals", {})
    assert sandbox.calls_to("GET", "/api/v2/deals") == 1
    assert API_TOKEN not in str(caught.value)
    assert "401" in str(caught.value)


async def test_an_ids_lookup_is_one_page_whatever_cursor_comes_back(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    people = [sandbox.add_person(f"p{n}")["id"] for n in range(lookups.BY_ID_AT_MOST + 1)]
    # Each page carries a cursor never seen before and the same people again.
    sandbox.faults.add(fresh_cursor=True, path="/api/v2/persons", count=faults.FOREVER)
    sandbox.clear_calls()
    found = await LookupCache().resolve(client, LookupRequest(persons=frozenset(people)))
    assert sorted(found.persons) == sorted(people)
    assert sandbox.calls_to("GET", "/api/v2/persons") == 1  # <= 100 ids: one page


async def test_a_lookup_listing_that_serves_the_same_page_again_is_stopped(
    client: PipedriveClient, sandbox: Sandbox
) -> None:
    sandbox.faults.add(fresh_cursor=True, path="/api/v2/stages", count=faults.FOREVER)
    sandbox.clear_calls()
    with pytest.raises(PipedriveUnavailable, match="same page again"):
        await LookupCache().resolve(client, LookupRequest(stages=frozenset(range(1, 9))))
    assert sandbox.calls_to("GET", "/api/v2/stages") == 2  # the repeat is the last call


async def test_a_token_file_rotated_into_two_lines_fails_the_call_before_sending(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token_file = tmp_path / "pd-token"
    token_file.write_text(API_TOKEN + "\n")
    account = config.parse(
        {
            "database": {"url": "sqlite://"},
            "accounts": [
                {"name": "main", "api_token_file": str(token_file), "base_url": sandbox.base_url}
            ],
        },
        "c.toml",
        tmp_path,
    ).accounts[0]
    async with PipedriveClient.http_client(account.api_root, account.token) as http:
        client = PipedriveClient(http, account="main", limiter=AccountRateLimiter(1000))
        await client.call("GET", "/v1/users/me")
        token_file.write_text(f"{API_TOKEN}\n{API_TOKEN}\n")  # a rotation gone wrong
        with pytest.raises(PipedriveAuthError) as caught:
            await client.call("GET", "/v1/users/me")
        token_file.unlink()
        with pytest.raises(PipedriveAuthError) as gone:
            await client.call("GET", "/v1/users/me")
    assert str(caught.value) == (
        "account 'main': GET /v1/users/me: the API token cannot be used: api_token_file: the "
        f"token contains a newline inside it (got '{token_file}')"
    )
    assert str(gone.value) == (
        "account 'main': GET /v1/users/me: the API token cannot be used: No such file or "
        f"directory (got '{token_file}')"
    )
    assert sandbox.calls_to("GET", "/v1/users/me") == 1, "no request without a usable token"


async def test_a_burst_paces_itself_by_pipedrives_rate_headers_instead_of_hitting_429(
    sandbox: Sandbox,
) -> None:
    # Pipedrive allows 6 calls per 1 s window here, far below our own burst window of 20 per
    # 3 s: only its headers can keep the burst from a 429. No retries: a 429 fails the test.
    sandbox.set_limits(burst=6, window_s=1.0, daily_tokens=5_000)
    usage = account_usage.Usage("main")
    async with PipedriveClient.http_client(sandbox.base_url, lambda: SecretStr(API_TOKEN)) as http:
        client = PipedriveClient(
            http,
            account="main",
            limiter=AccountRateLimiter(1000),
            retry=RetryOptions(attempts=1),
            usage=usage,
        )

        async def reader() -> None:
            for _ in range(5):
                await client.call("GET", "/api/v2/deals")

        started = time.monotonic()
        await asyncio.gather(reader(), reader())  # two feeds' nudged reads at once
        elapsed = time.monotonic() - started
    statuses = [call.status for call in sandbox.calls if call.path == "/api/v2/deals"]
    assert statuses == [200] * 10
    assert elapsed >= 1.0  # at least one wait for the window's reset
    assert usage.unflushed().rate_limit_waits >= 1
    # ... and the daily budget the headers said, for status and the reconciliation's stretch.
    assert usage.daily is not None
    assert (usage.daily.remaining, usage.daily.limit) == (5_000 - 10 * 10, 5_000)
