"""The pure parts of metrics and the admin listener: labels, costs, outcomes, readiness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon import config, metrics
from daemon.clock import FakeClock
from daemon.model import deliveries
from daemon.model.subscription_state import State
from daemon.pipedrive import account_usage, costs
from daemon.pipedrive.rate_limit import AccountRateLimiter
from daemon.polling import plan
from daemon.status import admin_page, dashboard, listener
from daemon.triggers import get as trigger

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v2/deals", "GET /api/v2/deals"),
        ("get", "/api/v2/deals/25", "GET /api/v2/deals/{id}"),
        ("PATCH", "/api/v2/activities/9000000001", "PATCH /api/v2/activities/{id}"),
        ("GET", "/v1/leads/adf21080-0e10-11eb-879b-05d71fb426ec", "GET /v1/leads/{id}"),
        ("GET", "/api/v1/users", "GET /v1/users"),
        ("GET", "/api/v2/deals?ids=1,2", "GET /api/v2/deals"),
    ],
)
def test_endpoint_label_is_the_route_template(method: str, path: str, expected: str) -> None:
    assert costs.endpoint(method, path) == expected


def claimed(created_at: datetime | None = NOW) -> deliveries.Claimed:
    return deliveries.Claimed(1, "msg_1", "s", "deal.added", "7", "{}", 0, created_at)


@pytest.mark.parametrize(
    ("verdict", "error", "label"),
    [
        ("delivered", None, "delivered"),
        ("retry", "callback returned 503 Service Unavailable", "retry"),
        ("retry", "refused: callback resolves to 127.0.0.1, a loopback address; ...", "refused"),
        ("dead", "refused: callback resolves to 127.0.0.1, a loopback address; ...", "dead"),
        ("dead", "callback returned 500 Internal Server Error", "dead"),
    ],
)
def test_delivery_outcome_label(verdict: Any, error: str | None, label: str) -> None:
    outcome = deliveries.Outcome(claimed(), NOW, None, error, 5, verdict)
    assert metrics.delivery_outcome(outcome) == label


def samples(registry_text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(registry_text.decode())
        for s in family.samples
    }


def test_counters() -> None:
    recorder = metrics.PrometheusMetrics()
    recorder.api_call("main", "GET", "/api/v2/deals", "200")
    recorder.api_call("main", "GET", "/api/v2/deals/4", "200")
    recorder.api_call("main", "GET", "/api/v2/deals", "429")  # no tokens spent
    recorder.api_call("main", "GET", "/api/v2/deals", "timeout")
    recorder.delivery(
        deliveries.Outcome(claimed(NOW - timedelta(seconds=3)), NOW, 200, None, 500, "delivered")
    )
    found = samples(metrics.exposition(recorder, [], NOW)[0])
    assert found[("pipedrive_triggers_api_tokens_total", (("account", "main"),))] == 11
    key = (("account", "main"), ("endpoint", "GET /api/v2/deals/{id}"), ("status", "200"))
    assert found[("pipedrive_triggers_api_calls_total", key)] == 1
    latency = ("pipedrive_triggers_delivery_latency_seconds_sum", (("subscription", "s"),))
    assert found[latency] == pytest.approx(3.5)


def test_gauges_have_one_state_set_per_subscription() -> None:
    rows = [
        metrics.SubscriptionGauges("a", State.FAILING, 2, NOW - timedelta(seconds=90), 1),
        metrics.SubscriptionGauges("b", State.ORPHANED),
    ]
    found = samples(metrics.exposition(metrics.PrometheusMetrics(), rows, NOW)[0])
    assert (
        found[("pipedrive_triggers_outbox_oldest_pending_seconds", (("subscription", "a"),))] == 90
    )
    assert found[("pipedrive_triggers_outbox_pending", (("subscription", "a"),))] == 2
    assert found[("pipedrive_triggers_dead_letters", (("subscription", "a"),))] == 1
    states = {
        labels: value
        for (name, labels), value in found.items()
        if name == "pipedrive_triggers_subscription_state"
    }
    assert len(states) == 2 * len(metrics.STATES)
    assert {dict(k)["subscription"]: dict(k)["state"] for k, v in states.items() if v == 1} == {
        "a": "failing",
        "b": "orphaned",
    }


def test_no_gauges_when_the_database_cannot_be_read() -> None:
    body, content_type = metrics.exposition(metrics.PrometheusMetrics(), None, NOW)
    assert "outbox_pending" not in body.decode() and "polls_total" in body.decode()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_openmetrics_when_the_scraper_asks() -> None:
    rows = [metrics.SubscriptionGauges("a", State.OK, 1)]
    accept = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    body, content_type = metrics.exposition(metrics.PrometheusMetrics(), rows, NOW, accept)
    assert content_type.startswith("application/openmetrics-text")
    assert (
        body.decode().count("# EOF") == 1
        and 'outbox_pending{subscription="a"} 1.0' in body.decode()
    )


def feed(interval_s: float) -> plan.Feed:
    sub: Any = type("S", (), {"name": "won-deals"})()
    return plan.Feed("main", trigger("deal.added").object, (sub,), interval_s, 60)


@pytest.mark.parametrize(
    ("failing_for", "stuck"),
    [(None, False), (0.0, False), (359.0, False), (360.0, False), (361.0, True)],
)
def test_a_feed_is_stuck_after_three_intervals(failing_for: float | None, stuck: bool) -> None:
    reasons = listener.stuck_feeds([feed(120)], lambda account, obj: failing_for)
    assert bool(reasons) is stuck
    if stuck:
        assert reasons[0].startswith("subscription 'won-deals': polls failing for 361s")


def test_failing_since_is_the_first_failure_and_ends_with_a_good_poll() -> None:
    clock = FakeClock()
    recorder = metrics.PrometheusMetrics(clock=clock)
    recorder.poll("main", "deals", ok=False)
    clock.advance(50)
    recorder.poll("main", "deals", ok=False)
    assert recorder.failing_for("main", "deals") == 50.0
    recorder.poll("main", "deals", ok=True)
    assert recorder.failing_for("main", "deals") is None


async def test_the_rate_limiter_reports_each_wait_once() -> None:
    waits: list[str] = []
    clock = FakeClock()
    limiter = AccountRateLimiter(2, window_s=1, on_wait=lambda: waits.append("wait"), clock=clock)
    await limiter.acquire()
    limiter.pause(0.05)  # a 429
    await limiter.acquire()  # sleeps through the pause: the 429 was the wait
    assert waits == ["wait"]
    started = clock.monotonic()
    await limiter.acquire()  # the window holds 2: this one waits for it, counted once
    assert clock.monotonic() - started > 0.5
    assert waits == ["wait", "wait"]


BASE: dict[str, Any] = {"accounts": [{"name": "main", "api_token": "tok"}]}


def problems(raw: dict[str, Any], base_dir: Path = Path("/etc/pd")) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(raw, "c.toml", base_dir)
    return caught.value.problems


def test_admin_is_off_by_default_and_loopback_needs_no_token() -> None:
    assert config.parse(BASE, "c.toml", Path("/etc/pd")).admin.address is None
    for listen in ("127.0.0.1:9465", "[::1]:9465", "localhost:0"):
        loaded = config.parse({**BASE, "admin": {"listen": listen}}, "c.toml", Path("/etc/pd"))
        assert loaded.admin.address is not None and loaded.admin.token() is None


def test_admin_off_loopback_needs_a_token_file(tmp_path: Path) -> None:
    assert problems({**BASE, "admin": {"listen": "0.0.0.0:9465"}}) == [
        "admin.listen: 0.0.0.0 is not a loopback address; set admin.token_file so requests "
        "need a bearer token (got '0.0.0.0:9465')"
    ]
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "good").write_text("s3cr3t-admin-token-0123456789\n")
    short = {**BASE, "admin": {"listen": "0.0.0.0:9465", "token_file": "short"}}
    assert problems(short, tmp_path) == [
        f"admin.token_file: the token must be at least 16 characters (got '{tmp_path / 'short'}')"
    ]
    good = {**BASE, "admin": {"listen": "0.0.0.0:9465", "token_file": "good"}}
    token = config.parse(good, "c.toml", tmp_path).admin.token()
    assert token is not None and token.get_secret_value() == "s3cr3t-admin-token-0123456789"
    assert problems({**BASE, "admin": {"listen": "9465"}})[0].startswith(
        'admin.listen: must be "host:port"'
    )


def test_the_page_escapes_everything_it_shows() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    page = admin_page.Page(
        now=NOW,
        subscriptions=[
            dashboard.SubscriptionRow(
                metrics.SubscriptionGauges(hostile, State.FAILING, 1, NOW, 1),
                delivered=0,
                last_error=f"callback returned 500 {hostile}",
                state_reason=hostile,
            )
        ],
        configured={hostile: admin_page.SubscriptionInfo("deal.added", hostile)},
        accounts={hostile: account_usage.Counts(3, 30)},
        recent=dashboard.Recent(
            [],
            [
                dashboard.DeadLetter(
                    7, "msg_1", hostile, "deal.added", hostile, NOW, 2, 500, hostile
                )
            ],
            1,
        ),
        csrf_token='"><script>',
        flash=hostile,
    )
    html = admin_page.render(page)
    assert "<img" not in html and "<script>" not in html
    assert html.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 6
    assert 'value="&quot;&gt;&lt;script&gt;"' in html
    assert '<meta http-equiv="refresh" content="5; url=./">' in html
