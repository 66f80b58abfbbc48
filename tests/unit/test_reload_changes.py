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


def test_admin_listen_needs_a_restart_and_the_token_file_does_not(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("admin-token-0123456789\n")
    none = _config([{"name": "a"}])
    on = none.model_copy(update={"admin": config.AdminConfig(listen="127.0.0.1:9465")})
    moved = none.model_copy(update={"admin": config.AdminConfig(listen="127.0.0.1:9466")})
    token = on.model_copy(
        update={"admin": config.AdminConfig(listen="127.0.0.1:9465", token_file=tmp_path / "token")}
    )
    assert reload.changes(none, on).restart_only == ["admin.listen"], "[admin] added"
    assert reload.changes(on, none).restart_only == ["admin.listen"], "[admin] removed"
    assert reload.changes(on, moved).restart_only == ["admin.listen"]
    assert reload.changes(on, token).restart_only == [], "applied by the reload itself"
    assert "admin.listen" in reload.RESTART_ONLY
