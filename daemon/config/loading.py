"""Reading the config: the TOML file and its includes parsed into a `Config`, every problem
worded with its file, dotted key and value and reported at once; then what a loaded config
is worth a word about, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon import redact
from daemon.config import cross_checks, includes
from daemon.config.defaults import DATABASE_FILE_NAME, DEFAULT_POLL_INTERVAL_S, STATE_DIRECTORY_ENV
from daemon.config.sections import Config
from daemon.errors import ConfigError

# The package's name, as before the split: log filters match "daemon.config:".
logger = logging.getLogger("daemon.config")


def _dotted(location: tuple[int | str, ...]) -> str:
    dotted = ""
    for part in location:
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else part)
    return dotted


def _reason(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "greater_than_equal":
        return f"must be >= {error['ctx']['ge']} (got {error['input']!r})"
    if error["type"] == "greater_than":
        return f"must be > {error['ctx']['gt']} (got {error['input']!r})"
    if error["type"] == "less_than_equal":
        return f"must be <= {error['ctx']['le']:g} (got {error['input']!r})"
    if error["type"] in ("finite_number", "float_parsing") and isinstance(error["input"], float):
        return f"must be a finite number (got {error['input']!r})"
    value = error.get("input")
    if (
        isinstance(value, dict | list)
        or "api_token" in str(error["loc"])
        or "secret" in str(error["loc"])
    ):
        return message  # never echo a whole table, a token or a secret
    if isinstance(value, str) and "://" in value:
        value = redact.url(value)  # its userinfo or query may hold a token
    return f"{message} (got {value!r})"


_INDEXED = re.compile(r"^(accounts|subscriptions)\[(\d+)\]")


def _with_names(problem: str, raw: dict[str, Any]) -> str:
    """`subscriptions[2].x` -> `subscriptions[2] ("deals-eu").x`, so the entry is found by
    the name a person gave it."""
    match = _INDEXED.match(problem)
    if not match:
        return problem
    entries = raw.get(match.group(1))
    index = int(match.group(2))
    if not isinstance(entries, list) or index >= len(entries):
        return problem
    entry = entries[index]
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str):
        return problem
    return f"{match.group(0)} ({json.dumps(name)}){problem[match.end() :]}"


def default_database_dir(base_dir: Path) -> Path:
    """Where the default SQLite file lives: systemd's state directory when the daemon runs
    under a unit with StateDirectory= (/etc is read-only there), else beside the config."""
    state_directory = os.environ.get(STATE_DIRECTORY_ENV, "").split(":")[0]
    return Path(state_directory) if state_directory else base_dir


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative paths in the file mean relative to the file, not to the daemon's cwd."""
    raw = dict(raw)  # the caller's dict stays as it was: parsing it twice gives one answer
    database = raw.get("database", {})
    if isinstance(database, dict):
        database = raw["database"] = dict(database)
        url = database.get("url")
        if url is None:
            database["url"] = f"sqlite:///{default_database_dir(base_dir) / DATABASE_FILE_NAME}"
        elif (
            isinstance(url, str)
            and url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
        ):
            relative = url.removeprefix("sqlite:///")
            if relative and relative != ":memory:":
                database["url"] = f"sqlite:///{(base_dir / relative).resolve()}"
    return raw


NO_SUBSCRIPTIONS = "subscriptions: none configured; add a [[subscriptions]] table"


def parse(
    raw: dict[str, Any],
    path: str,
    base_dir: Path,
    *,
    require_subscriptions: bool = False,
    origins: includes.Origins | None = None,
) -> Config:
    """Validate, reporting every problem at once. `run` requires a subscription (it would
    poll nothing); the action commands do not. `origins` (from `includes.merge`) says which
    included file each entry of `raw` came from, so a problem names that file."""
    origins = origins or includes.Origins()
    problems = [NO_SUBSCRIPTIONS] if require_subscriptions and not raw.get("subscriptions") else []
    try:
        config = Config.model_validate(
            _resolve_paths(raw, base_dir), context={"base_dir": base_dir}
        )
    except ValidationError as error:
        problems += [
            f"{_dotted(e['loc']) or '(top level)'}: {_reason(dict(e))}" for e in error.errors()
        ]
        config = None
    # Every problem in one report: a field's error does not hide a duplicate name. A key
    # pydantic already faulted is not faulted twice.
    faulted = {problem.partition(": ")[0] for problem in problems}
    problems += [
        problem
        for problem in cross_checks.find_problems(_resolve_paths(raw, base_dir), base_dir, origins)
        if problem.partition(": ")[0] not in faulted
    ]
    if problems or origins.problems or config is None:
        located = origins.problems + [origins.locate(_with_names(p, raw)) for p in problems]
        raise ConfigError(path, [p for _, p in located], [file for file, _ in located])
    return config


def _without_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """The config with its tokens and secrets left out, for commands that only read the
    database (`status`, `migrate`): they work where the accounts' tokens are not set."""
    raw = dict(raw)
    accounts = raw.get("accounts")
    if isinstance(accounts, list):
        raw["accounts"] = [
            {
                **{k: v for k, v in a.items() if k not in ("api_token", "api_token_file")},
                "api_token": "(not read)",
            }
            if isinstance(a, dict)
            else a
            for a in accounts
        ]
    subscriptions = raw.get("subscriptions")
    if isinstance(subscriptions, list):
        raw["subscriptions"] = [
            {k: v for k, v in s.items() if k != "secret"} if isinstance(s, dict) else s
            for s in subscriptions
        ]
    return raw


def load_without_secrets(path: str | Path) -> Config:
    """`load`, except that tokens and secrets are neither read nor checked (see
    `_without_secrets`): the result must never be used to call Pipedrive or sign."""
    return load(path, secrets=False)


def load_to_run(path: str | Path) -> Config:
    """`load` for `run`, `check-config` and reloads: at least one subscription."""
    return load(path, require_subscriptions=True)


def load(path: str | Path, *, secrets: bool = True, require_subscriptions: bool = False) -> Config:
    """Read and validate the config file; every problem is reported at once."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(file), [f"cannot read the file ({error.strerror})"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), [f"not valid TOML: {error}"]) from None
    raw, origins = includes.merge(raw, file)
    if not secrets:
        raw = _without_secrets(raw)
    return parse(
        raw,
        str(file),
        file.resolve().parent,
        require_subscriptions=require_subscriptions,
        origins=origins,
    )


def fingerprint(config: Config) -> str:
    """A short digest of what the config asks for, the same in every replica that reads the
    same files (its own `[cluster] instance` aside): replicas compare it to show a rollout
    half done. Secrets count only as present, never by value."""
    shape = config.model_dump(mode="json", exclude={"cluster": {"instance"}})
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def startup_warnings(config: Config) -> list[str]:
    """What is allowed but worth a word, each said once (by `run` at start, `check-config`)."""
    fast = [s for s in config.subscriptions if s.poll_interval < DEFAULT_POLL_INTERVAL_S]
    if not fast:
        return []
    listed = ", ".join(f"{s.name!r} ({s.poll_interval:g}s)" for s in fast)
    return [
        f"{len(fast)} subscriptions poll more often than the connector's "
        f"{DEFAULT_POLL_INTERVAL_S}s and spend more of their account's API budget: {listed}"
    ]


def log_startup_warnings(config: Config) -> None:
    for warning in startup_warnings(config):
        logger.warning("%s", warning, extra={"action": "config.poll_interval"})
