"""`include = [...]`: accounts and subscriptions in files of their own, every problem named by the
file it is in."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon import config

MAIN = 'include = ["accounts.d/*.toml"]\n'


def _account(name: str, token: str = "tok") -> str:
    return f'[[accounts]]\nname = "{name}"\napi_token = "{token}"\n'


def _subscription(name: str, account: str, extra: str = "") -> str:
    return (
        f'[[subscriptions]]\nname = "{name}"\naccount = "{account}"\ntrigger = "deal.added"\n'
        f'callback_url = "http://x/{name}"\n{extra}'
    )


def _tree(tmp_path: Path, main: str, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "config.toml").write_text(main, encoding="utf-8")
    return tmp_path / "config.toml"


def _lines(path: Path) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.load_to_run(path)
    return caught.value.lines


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config is given as `config.toml`, so included files are named `accounts.d/...`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_included_files_add_accounts_and_subscriptions_in_sorted_order(tmp_path: Path) -> None:
    path = _tree(
        tmp_path,
        MAIN + _account("main") + _subscription("s-main", "main"),
        {
            "accounts.d/b.toml": _account("beta") + _subscription("s-beta", "beta"),
            "accounts.d/a.toml": _account("acme") + _subscription("s-acme", "main"),
            "accounts.d/notes.txt": "not toml, not matched",
        },
    )
    loaded = config.load_to_run(path)
    assert [a.name for a in loaded.accounts] == ["main", "acme", "beta"]
    assert [s.name for s in loaded.subscriptions] == ["s-main", "s-acme", "s-beta"]


def test_a_main_file_may_hold_only_settings_and_includes(tmp_path: Path) -> None:
    path = _tree(
        tmp_path,
        f'include = ["{tmp_path}/elsewhere/*.toml", "nothing.d/*.toml"]\n',
        {"elsewhere/x.toml": _account("x") + _subscription("s", "x")},
    )
    loaded = config.load_to_run(path)
    assert [a.name for a in loaded.accounts] == ["x"]  # an absolute glob; one matching nothing


def test_a_relative_token_file_is_relative_to_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "accounts.d").mkdir()
    (tmp_path / "accounts.d" / "acme.token").write_text("secret-token\n", encoding="utf-8")
    path = _tree(
        tmp_path,
        MAIN,
        {
            "accounts.d/acme.toml": '[[accounts]]\nname = "acme"\napi_token_file = "acme.token"\n'
            + _subscription("s", "acme")
        },
    )
    account = config.load_to_run(path).accounts[0]
    assert account.token().get_secret_value() == "secret-token"


def test_problems_name_the_included_file_and_come_in_one_report(in_tmp: Path) -> None:
    _tree(
        in_tmp,
        MAIN + _account("main", token="") + _subscription("s-main", "main"),
        {
            "accounts.d/acme.toml": _account("acme")
            + _subscription("ok", "acme")
            + _subscription("fast", "acme", "poll_interval = 0\n"),
            "accounts.d/broken.toml": "[[accounts]\n",
            "accounts.d/extra.toml": 'include = ["x"]\n[delivery]\nmax_attempts = 3\n',
            "accounts.d/ghost.toml": _subscription("orphan", "nobody"),
        },
    )
    lines = _lines(Path("config.toml"))
    assert (
        'accounts.d/acme.toml: subscriptions[1] ("fast").poll_interval: must be >= 1 (got 0)'
        in lines
    )
    assert any(line.startswith("accounts.d/broken.toml: not valid TOML: ") for line in lines)
    assert (
        "accounts.d/extra.toml: delivery: not allowed in an included file, which holds only "
        "[[accounts]] and [[subscriptions]]"
    ) in lines
    assert any(line.startswith("accounts.d/extra.toml: include: not allowed") for line in lines)
    assert any(
        line.startswith('accounts.d/ghost.toml: subscriptions[0] ("orphan").account: no ')
        for line in lines
    )
    assert 'config.toml: accounts[0] ("main").api_token: is empty' in lines
    assert len(lines) == 6, lines


def test_duplicate_names_across_files_name_both_files(in_tmp: Path) -> None:
    _tree(
        in_tmp,
        MAIN + _account("acme") + _subscription("deals", "acme"),
        {
            "accounts.d/a.toml": _subscription("won", "acme"),
            "accounts.d/b.toml": _account("acme") + _subscription("won", "acme"),
            "accounts.d/c.toml": _subscription("deals", "acme"),
        },
    )
    assert sorted(_lines(Path("config.toml"))) == [
        'accounts.d/b.toml: accounts[0] ("acme").name: duplicate account name '
        "(got 'acme'; also in the main file: accounts[0])",
        'accounts.d/b.toml: subscriptions[0] ("won").name: duplicate subscription name '
        "(got 'won'; also in accounts.d/a.toml: subscriptions[0])",
        'accounts.d/c.toml: subscriptions[0] ("deals").name: duplicate subscription name '
        "(got 'deals'; also in the main file: subscriptions[0])",
    ]


def test_include_must_be_a_list_of_globs(in_tmp: Path) -> None:
    _tree(in_tmp, 'include = "accounts.d/*.toml"\n' + _account("a") + _subscription("s", "a"), {})
    assert _lines(Path("config.toml")) == [
        'config.toml: include: must be a list of glob patterns, e.g. ["accounts.d/*.toml"] '
        "(got 'accounts.d/*.toml')"
    ]


def test_status_commands_read_included_files_without_their_secrets(tmp_path: Path) -> None:
    path = _tree(
        tmp_path, MAIN, {"accounts.d/a.toml": '[[accounts]]\nname = "a"\napi_token = "${UNSET}"\n'}
    )
    assert [a.name for a in config.load_without_secrets(path).accounts] == ["a"]


def test_a_thousand_included_files_load_quickly(tmp_path: Path) -> None:
    files = {
        f"accounts.d/{n:04}.toml": _account(f"a{n}") + _subscription(f"s{n}", f"a{n}")
        for n in range(1000)
    }
    path = _tree(tmp_path, MAIN, files)
    started = time.perf_counter()
    loaded = config.load_to_run(path)
    elapsed = time.perf_counter() - started
    assert len(loaded.accounts) == len(loaded.subscriptions) == 1000
    assert elapsed < 2.0, f"{elapsed:.2f}s"  # about 0.3s here
