"""Config validation: every problem named by file, dotted key, value and reason."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from daemon import config

BASE: dict[str, Any] = {
    "accounts": [{"name": "main", "api_token": "tok"}],
    "subscriptions": [
        {"name": "s", "account": "main", "trigger": "deal.added", "callback_url": "http://x/h"}
    ],
}


SECRET_A = "whsec_" + base64.b64encode(b"a" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"b" * 32).decode()


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(raw, "c.toml", Path("/etc/pd"))
    return caught.value.problems


def with_sub(**fields: Any) -> dict[str, Any]:
    return {**BASE, "subscriptions": [{**BASE["subscriptions"][0], **fields}]}


def test_defaults() -> None:
    loaded = config.parse(BASE, "c.toml", Path("/etc/pd"))
    sub = loaded.subscriptions[0]
    assert (sub.poll_interval, sub.start, sub.secret) == (120, "now", None)
    assert loaded.accounts[0].calls_per_minute == 100
    assert loaded.accounts[0].api_root == "https://api.pipedrive.com"
    assert loaded.delivery.timeout == 15 and loaded.delivery.max_attempts == 12
    assert loaded.database.url == "sqlite:////etc/pd/pipedrive-triggers.db"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (with_sub(poll_interval=0), 'subscriptions[0] ("s").poll_interval: must be >= 1 (got 0)'),
        (
            with_sub(poll_interval="soon"),
            'subscriptions[0] ("s").poll_interval: must be a duration',
        ),
        (with_sub(trigger="deal.exploded"), 'subscriptions[0] ("s").trigger: '),
        (with_sub(callback_url="not a url"), 'subscriptions[0] ("s").callback_url: '),
        (with_sub(secret="abc"), "subscriptions[0] (\"s\").secret: must start with 'whsec_'"),
        (with_sub(secret="whsec_%%%"), 'subscriptions[0] ("s").secret: is not valid base64'),
        (with_sub(start="2026-01-01T00:00:00"), 'subscriptions[0] ("s").start: '),
        (with_sub(start="yesterday"), 'subscriptions[0] ("s").start: '),
        (
            with_sub(start="0001-01-01T00:00:00+01:00"),
            'subscriptions[0] ("s").start: must be between 2000-01-01T00:00:00Z and '
            "9999-12-31T23:59:59Z after conversion to UTC (got '0001-01-01T00:00:00+01:00')",
        ),
        (with_sub(start="9999-12-31T23:00:00-02:00"), 'subscriptions[0] ("s").start: must be'),
        (with_sub(start="1999-12-31T23:59:59Z"), 'subscriptions[0] ("s").start: must be'),
        (with_sub(colour="blue"), 'subscriptions[0] ("s").colour: unknown key'),
        ({**BASE, "accounts": [{"name": "main"}]}, 'accounts[0] ("main"): give exactly one of'),
        ({**BASE, "delivery": {"max_attempts": 0}}, "delivery.max_attempts: must be >= 1 (got 0)"),
        ({**BASE, "delivery": {"retry_schedule": []}}, "delivery.retry_schedule: "),
        ({"subscriptions": []}, "accounts: is required"),
    ],
)
def test_errors_name_the_key(raw: dict[str, Any], expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(raw)), problems(raw)


def test_secrets_are_not_echoed() -> None:
    found = problems(with_sub(secret="sk_live_not_a_whsec"))
    assert not any("sk_live_not_a_whsec" in problem for problem in found)


def test_cross_references() -> None:
    twice = {**BASE, "subscriptions": BASE["subscriptions"] * 2}
    assert problems(twice) == [
        "subscriptions[1] (\"s\").name: duplicate subscription name (got 's')"
    ]
    assert problems(with_sub(account="nope"))[0].startswith(
        "subscriptions[0] (\"s\").account: no [[accounts]] entry has this name (got 'nope'"
    )


def test_durations_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PD_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\n")
    raw = {
        "accounts": [
            {"name": "a", "api_token": "${PD_TOKEN}"},
            {"name": "b", "api_token_file": "token"},
        ],
        "delivery": {"retry_schedule": ["5s", "2m", "1h", 30]},
        "database": {"url": "sqlite:///data/pd.db"},
        "subscriptions": [{**BASE["subscriptions"][0], "account": "a"}],
    }
    loaded = config.parse(raw, "c.toml", tmp_path)
    assert loaded.accounts[0].token().get_secret_value() == "from-env"
    assert loaded.accounts[1].token().get_secret_value() == "from-file"
    assert loaded.delivery.retry_schedule == (5, 120, 3600, 30)
    assert loaded.database.url == f"sqlite:///{tmp_path / 'data' / 'pd.db'}"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "x")
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    loaded = config.load(example)
    used = {s.trigger for s in loaded.subscriptions}
    assert {"deal.added", "deal.added.legacy", "activity.added", "deal.stage_changed"} <= used
    assert any(s.filter for s in loaded.subscriptions)


def test_default_database_goes_to_systemd_state_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/pipedrive-triggers")
    loaded = config.parse(BASE, "c.toml", Path("/etc/pipedrive-triggers"))
    assert loaded.database.url == "sqlite:////var/lib/pipedrive-triggers/pipedrive-triggers.db"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/first:/var/lib/second")
    loaded = config.parse(BASE, "c.toml", Path("/etc/pipedrive-triggers"))
    assert loaded.database.url == "sqlite:////var/lib/first/pipedrive-triggers.db"
    given = {**BASE, "database": {"url": "sqlite:///here.db"}}
    loaded = config.parse(given, "c.toml", Path("/etc/pipedrive-triggers"))
    assert loaded.database.url == "sqlite:////etc/pipedrive-triggers/here.db", "a given url wins"


def test_token_file_reads_systemd_credentials_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = {
        "accounts": [{"name": "a", "api_token_file": "${CREDENTIALS_DIRECTORY}/pd-token"}],
        "subscriptions": [{**BASE["subscriptions"][0], "account": "a"}],
    }
    assert problems(raw) == [
        'accounts[0] ("a").api_token_file: environment variable CREDENTIALS_DIRECTORY is not set'
    ]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pd-token").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    loaded = config.parse(raw, "c.toml", Path("/etc/pipedrive-triggers"))
    assert loaded.accounts[0].api_token_file == credentials / "pd-token"
    assert loaded.accounts[0].token().get_secret_value() == "from-credential"


def test_a_bad_callback_url_is_echoed_masked() -> None:
    [problem] = problems(with_sub(callback_url="ftp://u:PASSWORD@hooks.example.com/h?k=v"))
    assert problem.startswith('subscriptions[0] ("s").callback_url: URL scheme should be')
    assert "(got 'ftp://***@hooks.example.com/h?k=***')" in problem
    assert "PASSWORD" not in problem


def test_private_targets_are_refused_unless_allowed() -> None:
    assert config.parse(BASE, "c.toml", Path("/x")).subscriptions[0].allow_private_targets is False
    allowed = config.parse(with_sub(allow_private_targets=True), "c.toml", Path("/x"))
    assert allowed.subscriptions[0].allow_private_targets is True


def test_delivery_options_and_their_bounds() -> None:
    raw = {
        **with_sub(ordered=True, max_per_second=20, pause_after=3, secret=[SECRET_A, SECRET_B]),
        "delivery": {"pause_after": 5, "probe_interval": "2m", "max_body_bytes": 4096},
        "retention": {"delivered": "30d", "interval": "15m"},
    }
    loaded = config.parse(raw, "c.toml", Path("/etc/pd"))
    sub = loaded.subscriptions[0]
    assert (sub.ordered, sub.max_per_second, sub.pause_after) == (True, 20, 3)
    assert [s.get_secret_value() for s in sub.secrets] == [SECRET_A, SECRET_B]
    assert (loaded.delivery.pause_after, loaded.delivery.probe_interval) == (5, 120)
    assert loaded.delivery.max_body_bytes == 4096
    assert (loaded.retention.delivered, loaded.retention.interval) == (30 * 86400, 900)
    defaults = config.parse(BASE, "c.toml", Path("/etc/pd"))
    assert (defaults.retention.delivered, defaults.retention.interval) == (7 * 86400, 3600)
    assert (defaults.delivery.pause_after, defaults.delivery.probe_interval) == (10, 60)
    assert defaults.subscriptions[0].secrets == () and not defaults.subscriptions[0].ordered


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {**BASE, "delivery": {"retry_schedule": ["99999999999d"]}},
            "delivery.retry_schedule[0]: must be <= 604800 (got '99999999999d')",
        ),
        ({**BASE, "delivery": {"timeout": "2h"}}, "delivery.timeout: must be <= 600 (got '2h')"),
        (
            with_sub(poll_interval="400d"),
            'subscriptions[0] ("s").poll_interval: must be <= 604800',
        ),
        ({**BASE, "retention": {"interval": "2d"}}, "retention.interval: must be <= 86400"),
        (with_sub(max_per_second=0), 'subscriptions[0] ("s").max_per_second: must be >= 1'),
    ],
)
def test_durations_and_rates_are_bounded(raw: dict[str, Any], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(raw)), problems(raw)


def test_a_bad_secret_in_a_list_is_named_but_not_echoed() -> None:
    leaked = "whsec_not*base64"
    found = problems(with_sub(secret=[SECRET_A, leaked]))
    assert found and found[0].startswith('subscriptions[0] ("s").secret')
    assert all(leaked not in p and SECRET_A not in p for p in found)


def test_several_problems_at_once_with_names_beside_indexes(tmp_path: Path) -> None:
    binary = tmp_path / "token.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    raw = {
        "accounts": [
            {"name": "main", "api_token": "  "},
            {"name": "file", "api_token_file": str(binary)},
        ],
        "delivery": {"timeout": float("inf")},
        "subscriptions": [
            {**BASE["subscriptions"][0], "name": "ok"},
            {**BASE["subscriptions"][0], "name": "deals-eu", "poll_interval": float("inf")},
            {**BASE["subscriptions"][0], "name": "huge", "poll_interval": 1e300},
            {**BASE["subscriptions"][0], "name": "nul\x00here"},
            {**BASE["subscriptions"][0], "name": "short", "secret": "whsec_" + "QUJD"},
        ],
    }
    found = problems(raw)
    assert sorted(found) == [
        'accounts[0] ("main").api_token: is empty',
        f'accounts[1] ("file").api_token_file: is not a text file with one line: the API '
        f"token (got '{binary}')",  # in the same report as the fields' errors
        "delivery.timeout: must be a finite duration (got inf)",
        'subscriptions[1] ("deals-eu").poll_interval: must be a finite duration (got inf)',
        'subscriptions[2] ("huge").poll_interval: must be <= 604800 (got 1e+300)',
        'subscriptions[3] ("nul\\u0000here").name: must not contain control characters '
        "(tabs, newlines, NUL) (got 'nul\\x00here')",
        'subscriptions[4] ("short").secret: is 3 bytes after base64 decoding; Standard Webhooks '
        "asks for 24 to 64 (e.g. whsec_ + base64 of 32 random bytes)",
    ], found
    del raw["delivery"]
    raw["accounts"][0]["api_token"] = "t"
    raw["subscriptions"] = raw["subscriptions"][:1]
    assert problems(raw) == [
        f'accounts[1] ("file").api_token_file: is not a text file with one line: the API '
        f"token (got '{binary}')"
    ]
    with pytest.raises(config.ConfigError) as caught:
        config.parse({**BASE, "subscriptions": []}, "c.toml", tmp_path, require_subscriptions=True)
    assert caught.value.problems == [config.NO_SUBSCRIPTIONS]
    assert not config.parse({**BASE, "subscriptions": []}, "c.toml", tmp_path).subscriptions


def _documentation(lines: list[str], key: str) -> list[str]:
    """The lines that set `key` (or show it commented out), each with the comment block
    right above it."""
    found = []
    for index, line in enumerate(lines):
        if line.lstrip("# ").startswith(f"{key} ="):
            above = index
            while above > 0 and lines[above - 1].startswith("#"):
                above -= 1
            found.append("\n".join(lines[above : index + 1]))
    return found


def test_example_config_documents_every_key_with_its_default() -> None:
    """Every key of every config model appears in config.example.toml (set or commented
    out), and every key that has a default says it in a comment."""
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    lines = example.read_text(encoding="utf-8").splitlines()
    models = {
        "database": config.DatabaseConfig,
        "delivery": config.DeliveryConfig,
        "retention": config.RetentionConfig,
        "admin": config.AdminConfig,
        "cluster": config.ClusterConfig,
        "instant": config.InstantConfig,
        "accounts": config.AccountConfig,
        "subscriptions": config.SubscriptionConfig,
    }
    assert set(models) == set(config.Config.model_fields)
    undocumented = []
    for section, model in models.items():
        for key, field in model.model_fields.items():
            documented = _documentation(lines, key)
            if not documented:
                undocumented.append(f"{section}.{key}: missing")
            elif not field.is_required() and not any(
                "default" in text.lower() for text in documented
            ):
                undocumented.append(f"{section}.{key}: default not given")
    assert undocumented == []


TOKEN = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (TOKEN + "\n", "the token contains a newline at its end"),
        (TOKEN[:20] + "\n" + TOKEN[20:], "the token contains a newline inside it"),
        (TOKEN + "\r", "the token contains a carriage return at its end"),
        ("\t" + TOKEN, "the token contains a tab inside it"),
        (TOKEN + "\x00", "the token contains a NUL at its end"),
        (TOKEN + "\x7f", "the token contains a control character (U+007F) at its end"),
        (TOKEN + "\x85", "the token contains a control character (U+0085) at its end"),
    ],
)
def test_an_api_token_is_one_line(given: str, problem: str) -> None:
    found = problems({**BASE, "accounts": [{"name": "main", "api_token": given}]})
    assert found == [f'accounts[0] ("main").api_token: {problem}; an API token is one line of text']
    assert not any(TOKEN[:20] in p or TOKEN[20:] in p for p in found)


def test_an_api_token_from_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_TOKEN", f"{TOKEN}\n")  # `export PD_TOKEN="$(cat file; echo)"`
    found = problems({**BASE, "accounts": [{"name": "main", "api_token": "${PD_TOKEN}"}]})
    assert found == [
        'accounts[0] ("main").api_token: environment variable PD_TOKEN contains a newline at '
        "its end; an API token is one line of text"
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (f"{TOKEN}\n".encode(), None),
        (f"{TOKEN}\r\n".encode(), None),
        (f"  {TOKEN}  \n".encode(), None),
        (TOKEN.encode(), None),
        (f"{TOKEN}\n\n".encode(), "the token contains a newline at its end"),
        (f"{TOKEN}\nsecond line\n".encode(), "the token contains a newline inside it"),
        (f"{TOKEN}\x00\n".encode(), "the token contains a NUL at its end"),
    ],
)
def test_an_api_token_file_holds_one_line(
    content: bytes, problem: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "pd-token"
    path.write_bytes(content)
    raw = {**BASE, "accounts": [{"name": "main", "api_token_file": str(path)}]}
    if problem is None:
        loaded = config.parse(raw, "c.toml", tmp_path)
        assert loaded.accounts[0].token().get_secret_value() == TOKEN
        return
    assert problems(raw) == [
        f'accounts[0] ("main").api_token_file: {problem}; the file must hold one line, the API '
        f"token (a single line ending is fine) (got '{path}')"
    ]


def test_a_token_file_rotated_into_two_lines_fails_its_use(tmp_path: Path) -> None:
    path = tmp_path / "pd-token"
    path.write_text(TOKEN + "\n")
    loaded = config.parse(
        {**BASE, "accounts": [{"name": "main", "api_token_file": str(path)}]}, "c.toml", tmp_path
    )
    path.write_text(f"{TOKEN}\n{TOKEN}\n")
    with pytest.raises(ValueError) as caught:
        loaded.accounts[0].token()
    assert str(caught.value) == (
        f"api_token_file: the token contains a newline inside it (got '{path}')"
    )


def test_an_admin_token_file_holds_one_line(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("admin-token-0123456789\nmore\n")
    token_file = str(tmp_path / "admin-token")
    raw = {**BASE, "admin": {"listen": "127.0.0.1:9465", "token_file": token_file}}
    assert problems(raw) == [
        "admin.token_file: the token contains a newline inside it; the file must hold one "
        f"line, the token (got '{tmp_path / 'admin-token'}')"
    ]
