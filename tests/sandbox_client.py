"""The daemon's Pipedrive client for the tests' one account ("main") on a sandbox: a rate
limit that never holds a test back, and one try a call, so a failure shows at once."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.pipedrive.rate_limit import AccountRateLimiter
from tests.conftest import API_TOKEN


def sandbox_client(base_url: str) -> tuple[httpx.AsyncClient, PipedriveClient]:
    """(the HTTP client to close, the Pipedrive client on it)."""
    http = PipedriveClient.http_client(base_url, lambda: SecretStr(API_TOKEN))
    client = PipedriveClient(
        http, account="main", limiter=AccountRateLimiter(1000), retry=RetryOptions(attempts=1)
    )
    return http, client
