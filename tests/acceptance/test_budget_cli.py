"""What a config will ask of Pipedrive, said by `check-config` (and `run`) only: the token
budget's stretched intervals, and calls per minute against the account's limits."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.test_cli import cli
from tests.conftest import config_text


def write(tmp_path: Path, subscriptions: list[dict[str, object]], account_extra: str) -> Path:
    text = config_text(
        database_url=f"sqlite:///{tmp_path / 'd.db'}",
        api_url="https://api.pipedrive.com",
        callback_url="https://hooks.example.com",
        subscriptions=subscriptions,
    )
    text = text.replace("calls_per_minute = 100\n", f"calls_per_minute = 100\n{account_extra}")
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_budget_warning_comes_from_check_config_and_run_only(tmp_path: Path) -> None:
    subs = [
        {"name": "deals", "trigger": "deal.added", "poll_interval": 120},
        {"name": "acts", "trigger": "activity.added", "poll_interval": 120},
    ]
    config = write(tmp_path, subs, "daily_token_budget = 30000\nbudget_share = 0.25\n")
    checked = cli("--config", str(config), "check-config")
    assert checked.returncode == 0, checked.stderr
    said = checked.stdout + checked.stderr
    assert "deals every" in said and "(was 120s)" in said, said
    assert cli("--config", str(config), "migrate").returncode == 0
    for command in (["status"], ["status", "--json"], ["dead-letters", "list"]):
        result = cli("--config", str(config), *command)
        assert "was 120s" not in result.stdout + result.stderr, (command, result.stderr)
        assert "daily budget" not in result.stderr, (command, result.stderr)


def test_check_config_predicts_calls_per_minute_and_names_what_does_not_fit(
    tmp_path: Path,
) -> None:
    triggers = ["deal.added", "activity.added", "person.added", "organization.added"]
    subs = [
        {"name": f"s{n}", "trigger": trigger, "poll_interval": 2}
        for n, trigger in enumerate(triggers)
    ]
    config = write(tmp_path, subs, "")
    checked = cli("--config", str(config), "check-config")
    assert checked.returncode == 0, checked.stderr
    # 4 object types every 2 s: 120 listings a minute against 100.
    assert "predicted calls/min: 120 listings" in checked.stdout, checked.stdout
    assert "calls_per_minute 100" in checked.stdout
    warning = checked.stderr
    assert "120" in warning and "calls_per_minute = 100" in warning, warning
    for name in ("s0", "s1", "s2", "s3"):
        assert f"'{name}'" in warning, warning
    assert "poll_interval >= 3s" in warning, warning  # 4 x 60 / 3 = 80 <= 100
