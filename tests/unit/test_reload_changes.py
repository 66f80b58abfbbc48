"""What a reload changes, decided from two configs without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon import config
from daemon.service import reload


def _config(subscriptions: list[dict[str, Any]], **database: str) -> config.Config:
    raw = {
        "database": {"url": "sqlite:///x.db", **database},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {"account": "main", "trigger": "deal.added", "callback_url": "https://h.example", **s}
            for s in subscriptions
        ],
    }
    return config.parse(raw, "c.toml", Path("/tmp"))


def test_added_removed_changed_and_restart_only_keys() -> None:
    old = _config([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    new = _config(
        [{"name": "a"}, {"name": "c", "poll_interval": 300}, {"name": "d"}], url="sqlite:///y.db"
    )
    found = reload.changes(old, new)
    assert (found.added, found.removed, found.changed) == (["d"], ["b"], ["c"])
    assert found.restart_only == ["database.url"]
    assert not found.accounts_changed
    assert not reload.changes(old, old), "the same config changes nothing"
