"""Checks that span fields and sections (unique names, references between them, token files
that serve), which pydantic cannot make field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationError

from daemon import triggers
from daemon.config import includes
from daemon.config.defaults import MIN_ADMIN_TOKEN_LENGTH
from daemon.config.sections import AdminConfig, Frozen
from daemon.config.values import control_character, is_loopback, token_file_path, token_text
from daemon.triggers import filters


def _entries(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = raw.get(key)
    if not isinstance(entries, list):
        return []
    return [entry if isinstance(entry, dict) else {} for entry in entries]


def _valid(model: type[BaseModel], value: Any, base_dir: Path) -> Any:
    """`value` validated as `model`, or None when a field of it is wrong (reported already)."""
    try:
        return model.model_validate(value, context={"base_dir": base_dir})
    except ValidationError:
        return None


def find_problems(
    raw: dict[str, Any], base_dir: Path, origins: includes.Origins | None = None
) -> list[str]:
    """What pydantic cannot see field by field: names must be unique and refer to each other,
    filter keys exist, token files serve. Read from the raw tables, so that these come in the
    same report as any field's error, whatever else is wrong in the file."""
    problems: list[str] = []
    origins = origins or includes.Origins()
    accounts = _entries(raw, "accounts")
    account_names = [name for a in accounts if isinstance(name := a.get("name"), str)]
    known_accounts = set(account_names)
    first: dict[str, int] = {}
    for index, name in enumerate(a.get("name") for a in accounts):
        if isinstance(name, str) and name in first:
            also = origins.elsewhere("accounts", index, first[name])
            problems.append(f"accounts[{index}].name: duplicate account name (got {name!r}{also})")
        if isinstance(name, str):
            first.setdefault(name, index)
    first = {}
    for index, subscription in enumerate(_entries(raw, "subscriptions")):
        name, trigger, account = (subscription.get(k) for k in ("name", "trigger", "account"))
        if isinstance(name, str) and name in first:
            also = origins.elsewhere("subscriptions", index, first[name])
            problems.append(
                f"subscriptions[{index}].name: duplicate subscription name (got {name!r}{also})"
            )
        if isinstance(name, str):
            first.setdefault(name, index)
        conditions = subscription.get("filter", {})
        if (
            isinstance(trigger, str)
            and trigger in triggers.REGISTRY
            and isinstance(conditions, dict)
        ):
            problems.extend(
                f"subscriptions[{index}].filter.{key}: {reason}"
                for key, reason in filters.problems(triggers.get(trigger).object, conditions)
            )
        if isinstance(account, str) and account not in known_accounts:
            problems.append(
                f"subscriptions[{index}].account: no [[accounts]] entry has this name "
                f"(got {account!r}; known: {', '.join(account_names) or 'none'})"
            )
        if isinstance(trigger, str) and (why := _needs_instant(raw, accounts, trigger, account)):
            problems.append(f"subscriptions[{index}].trigger: {why}")
    admin = _valid(AdminConfig, raw.get("admin", {}), base_dir)
    if admin is not None:
        problems.extend(_admin_problems(admin))
    for index, entry in enumerate(accounts):
        if "api_token_file" not in entry:
            continue
        found = _valid(_TokenFileOnly, {"api_token_file": entry["api_token_file"]}, base_dir)
        if found is None or found.api_token_file is None:
            continue
        if problem := _token_file_problem(found.api_token_file):
            problems.append(f"accounts[{index}].api_token_file: {problem}")
    return problems


def _needs_instant(
    raw: dict[str, Any], accounts: list[dict[str, Any]], trigger: str, account: object
) -> str | None:
    """Why a deletion trigger cannot be served here: Pipedrive lists no deleted item (deals
    aside), so only its delete webhook, in instant mode, can fire one."""
    if trigger not in triggers.REGISTRY or not triggers.get(trigger).deletion:
        return None
    needs = (
        f"{trigger!r} needs instant mode: Pipedrive does not list deleted items, only its "
        "delete webhook tells of them"
    )
    if not isinstance(raw.get("instant"), dict):
        return f"{needs}; add an [instant] table (see the README's Instant mode)"
    opted_out = any(a.get("name") == account and a.get("instant") is False for a in accounts)
    if opted_out:
        return f"{needs}; account {account!r} sets instant = false"
    return None


def _admin_problems(admin: AdminConfig) -> list[str]:
    problems = []
    address = admin.address
    if address is not None and not is_loopback(address[0]) and admin.token_file is None:
        problems.append(
            f"admin.listen: {address[0]} is not a loopback address; set admin.token_file so "
            f"requests need a bearer token (got {admin.listen!r})"
        )
    if admin.token_file is not None:
        try:
            token = admin.token()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            problems.append(
                f"admin.token_file: cannot read it ({reason}; got '{admin.token_file}')"
            )
        else:
            found = None if token is None else control_character(token.get_secret_value())
            if found is not None:
                problems.append(
                    f"admin.token_file: the token contains {found}; the file must hold one "
                    f"line, the token (got '{admin.token_file}')"
                )
            elif token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
                problems.append(
                    f"admin.token_file: the token must be at least {MIN_ADMIN_TOKEN_LENGTH} "
                    f"characters (got '{admin.token_file}')"
                )
    return problems


class _TokenFileOnly(Frozen):
    api_token_file: Annotated[Path | None, BeforeValidator(token_file_path)] = None


def _token_file_problem(path: Path) -> str | None:
    """Why a token file cannot serve (never quoting its content), or None."""
    if not path.is_file():
        return f"file not found (got '{path}')"
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"cannot read the file ({error.strerror}) (got '{path}')"
    try:
        text = token_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        return f"is not a text file with one line: the API token (got '{path}')"
    if (found := control_character(text)) is not None:
        return (
            f"the token contains {found}; the file must hold one line, the API token "
            f"(a single line ending is fine) (got '{path}')"
        )
    if not text.strip():
        return f"is empty (got '{path}')"
    return None
