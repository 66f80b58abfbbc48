"""The config's value checks: `${VAR}` expansion, token files and tokens, signing secrets, names,
control characters, start times, listen addresses and URLs, and the annotated types the
sections' fields are declared with. Each check raises ValueError with the message a person sees
after the dotted key."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationInfo
from standardwebhooks.webhooks import Webhook

from daemon import times, triggers
from daemon.config.defaults import (
    MAX_DELIVERY_TIMEOUT_S,
    MAX_NAME_LENGTH,
    MAX_POLL_INTERVAL_S,
    MAX_RETRY_DELAY_S,
    MAX_SECRETS,
    MIN_SECRET_BYTES,
)

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_REF_INSIDE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any) -> Any:
    """`${VAR}` reads an environment variable, so tokens need not sit in the file."""
    if isinstance(value, str) and (match := _ENV_REF.match(value.strip())):
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    return value


def token_file_path(value: Any, info: ValidationInfo) -> Any:
    """`${VAR}` anywhere in the path reads the environment (systemd's LoadCredential= gives
    `${CREDENTIALS_DIRECTORY}/pipedrive-token`); a relative path is relative to the config."""
    if not isinstance(value, str):
        return value
    unset = [name for name in _ENV_REF_INSIDE.findall(value) if name not in os.environ]
    if unset:
        raise ValueError(f"environment variable {unset[0]} is not set")
    path = Path(_ENV_REF_INSIDE.sub(lambda match: os.environ[match.group(1)], value))
    base_dir = (info.context or {}).get("base_dir")
    return base_dir / path if isinstance(base_dir, Path) else path


def _check_signing_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value()
    if not raw.startswith("whsec_"):
        raise ValueError("must start with 'whsec_' followed by base64 (Standard Webhooks)")
    try:
        Webhook(raw)
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except Exception:
        raise ValueError("is not valid base64 after 'whsec_'") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"is {len(key)} bytes after base64 decoding; Standard Webhooks asks for "
            f"{MIN_SECRET_BYTES} to 64 (e.g. whsec_ + base64 of 32 random bytes)"
        )
    return value


def _check_name(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters (tabs, newlines, NUL)")
    return value


_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}


def control_character(text: str) -> str | None:
    """Where `text` holds a control character and which ("a newline at its end"), or None.
    Says nothing else of the text: it may be a token."""
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cc":
            name = _CONTROL_NAMES.get(char, f"a control character (U+{ord(char):04X})")
            return f"{name} {'at its end' if index == len(text) - 1 else 'inside it'}"
    return None


def token_text(file_text: str) -> str:
    """A token file's token: the text without the one line ending an editor or `echo` adds
    (LF or CRLF), and without surrounding spaces. Anything else stays, to be refused."""
    return file_text.removesuffix("\n").removesuffix("\r").strip(" ")


def token_value(value: Any) -> Any:
    """`api_token` as given or from `${VAR}`: one line of text. A control character (a newline
    from `$(cat file)`, a tab) would only fail every request later, as a protocol error."""
    if not isinstance(value, str):
        return value
    token = _expand_env(value)
    if (found := control_character(token)) is not None:
        match = _ENV_REF.match(value.strip())
        source = f"environment variable {match.group(1)}" if match else "the token"
        raise ValueError(f"{source} contains {found}; an API token is one line of text")
    return token


def check_token(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("is empty")
    return value


def signing_secrets(value: Any) -> tuple[SecretStr, ...] | None:
    """One `whsec_` secret or a list of them (rotation), each may be `${VAR}`; the message
    names which one is wrong, never its value."""
    if value is None:
        return None
    many = isinstance(value, list | tuple)
    items = list(value) if many else [value]
    if many and not 1 <= len(items) <= MAX_SECRETS:
        raise ValueError(f"give between 1 and {MAX_SECRETS} secrets")
    secrets: list[SecretStr] = []
    for index, item in enumerate(items):
        where = f"secret {index + 1} " if many else ""
        if isinstance(item, SecretStr):
            item = item.get_secret_value()
        if not isinstance(item, str):
            raise ValueError(f"{where}must be a string")
        try:
            checked = _check_signing_secret(SecretStr(_expand_env(item)))
        except ValueError as error:
            raise ValueError(f"{where}{error}") from None
        assert checked is not None
        secrets.append(checked)
    return tuple(secrets)


def parse_start(value: Any) -> Any:
    """ "now" or an aware RFC 3339 time, with one message for both (not one per union branch)."""
    if value == "now":
        return value
    moment = value
    if isinstance(value, str):
        try:
            moment = times.parse_rfc3339(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError('must be "now" or an RFC 3339 time with a zone, e.g. 2026-01-01T00:00:00Z')
    return _sane_time(moment)


# Every time in the config lies here once in UTC, so no arithmetic on it (a look-back, a
# listing's `updated_since`) can leave datetime's range: year 1 at +01:00 is year 0 in UTC.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _sane_time(moment: datetime) -> datetime:
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValueError(
            f"must be between {times.format_rfc3339_z(EARLIEST_TIME)} and "
            f"{times.format_rfc3339_z(LATEST_TIME)} after conversion to UTC"
        )
    return moment


def check_trigger(value: str) -> str:
    if value not in triggers.REGISTRY:
        raise ValueError(f"unknown trigger; known: {', '.join(sorted(triggers.REGISTRY))}")
    return value


FilterScalar = (
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True)]
    | Annotated[str, Field(strict=True)]
)
FilterValue = FilterScalar | list[FilterScalar]
# Finite (times.parse_duration refuses inf and NaN); each use sets its own upper bound.
Duration = Annotated[float, BeforeValidator(times.parse_duration), Field(gt=0)]
DeliveryTimeout = Annotated[Duration, Field(le=MAX_DELIVERY_TIMEOUT_S)]
RetryDelay = Annotated[Duration, Field(le=MAX_RETRY_DELAY_S)]
PollInterval = Annotated[
    float, BeforeValidator(times.parse_duration), Field(ge=1, le=MAX_POLL_INTERVAL_S)
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_check_name)]


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('must be "host:port", e.g. "127.0.0.1:9465"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_listen(value: str | None) -> str | None:
    if value is not None:
        split_listen(value)
    return value


def check_public_url(value: str) -> str:
    """What Pipedrive will call, without a trailing slash (the account's name is appended):
    https, or plain http to a loopback host (tests, a proxy on the same machine); no
    credentials, query or fragment, which Pipedrive would send on and logs would show."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError('must be an https URL, e.g. "https://hooks.example.com/pipedrive"')
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(
            "must be https: Pipedrive calls only public https URLs (plain http is allowed "
            "for a loopback host only)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials; the daemon makes its own for Pipedrive")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("must not have a query or a fragment: the account's name is appended")
    return value.rstrip("/")
