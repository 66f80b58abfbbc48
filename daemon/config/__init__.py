"""The config file: one TOML file (and the files it includes), validated once into frozen
pydantic models."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import os
import platform
import re
import tomllib
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from standardwebhooks.webhooks import Webhook

from daemon import redact, times, triggers
from daemon.config import includes
from daemon.errors import ConfigError
from daemon.model import endpoint_health
from daemon.triggers import filters

logger = logging.getLogger(__name__)

CONFIG_ENV_VAR = "PIPEDRIVE_TRIGGERS_CONFIG"
DEFAULT_BASE_URL = "https://api.pipedrive.com"
DEFAULT_CALLS_PER_MINUTE = 100  # the Power Automate connector's limit per connection
DEFAULT_POLL_INTERVAL_S = 120  # the connector's trigger polling frequency
DEFAULT_DELIVERY_TIMEOUT_S = 15.0  # Standard Webhooks' advice
DEFAULT_MAX_ATTEMPTS = 12
# Spread over ~2.9 days, so a consumer that is down over a weekend loses nothing.
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (
    5, 60, 300, 1800, 7200, 18000, 36000, 36000, 50400, 50400, 50400,
)  # fmt: skip
DEFAULT_JITTER = 0.2  # each delay is stretched or shrunk by up to 20 %
DEFAULT_CONCURRENCY = 64  # POSTs in flight per process
DEFAULT_PER_SUBSCRIPTION_CONCURRENCY = 16  # so one slow consumer cannot take every slot
DEFAULT_PAUSE_AFTER = 10  # consecutive failed attempts before a subscription's deliveries pause
DEFAULT_PROBE_INTERVAL_S = 60.0  # a paused subscription's first probe; doubles up to an hour
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a bigger body is dead-lettered, never sent
DEFAULT_RETENTION_DELIVERED_S = 7 * 86_400.0  # delivered events and attempts kept this long
DEFAULT_RETENTION_INTERVAL_S = 3600.0  # how often the daemon prunes them
# Finite upper bounds, so no duration can overflow a datetime or strand a row for ever, and
# every value check-config accepts also runs (no inf, no 1e300 s sleeps).
MAX_RETRY_DELAY_S = 7 * 86_400.0
MAX_LOOK_BACK_S = 86_400.0
MAX_PROBE_INTERVAL_S = 3600.0
MAX_RETENTION_S = 3650 * 86_400.0
MAX_RETENTION_INTERVAL_S = 86_400.0
MAX_PER_SECOND = 10_000
MAX_SECRETS = 8  # rotation needs two; a few more cost a signature each on every attempt
DATABASE_FILE_NAME = "pipedrive-triggers.db"
# Set by systemd's StateDirectory= (colon-separated when there are several; the first is ours).
STATE_DIRECTORY_ENV = "STATE_DIRECTORY"

DEFAULT_LOOK_BACK_S = 60.0  # how late an item may become visible after its update_time
DEFAULT_BUDGET_SHARE = 0.5  # of `daily_token_budget`: the rest is for the company's other tools
MIN_SECRET_BYTES = 24  # Standard Webhooks: 24 to 64 bytes of key
MAX_POLL_INTERVAL_S = 7 * 86400
MAX_DURATION_S = 7 * 86400  # any other duration
MAX_DELIVERY_TIMEOUT_S = 600.0
MAX_CALLS_PER_MINUTE = 100_000
MAX_ATTEMPTS = 1000
MAX_CONCURRENCY = 10_000
MAX_DAILY_TOKEN_BUDGET = 10**9
MAX_NAME_LENGTH = 200  # the database's column width

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


def _token_file(value: Any, info: ValidationInfo) -> Any:
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


def _token_value(value: Any) -> Any:
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


def _check_token(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("is empty")
    return value


def _signing_secrets(value: Any) -> tuple[SecretStr, ...] | None:
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


def _parse_start(value: Any) -> Any:
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


def _check_trigger(value: str) -> str:
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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseConfig(_Frozen):
    url: str  # the loader fills the default: see default_database_dir


class AccountConfig(_Frozen):
    name: Name
    api_token: Annotated[
        SecretStr | None, BeforeValidator(_token_value), AfterValidator(_check_token)
    ] = None
    api_token_file: Annotated[Path | None, BeforeValidator(_token_file)] = None
    base_url: HttpUrl = HttpUrl(DEFAULT_BASE_URL)
    calls_per_minute: Annotated[int, Field(ge=1, le=MAX_CALLS_PER_MINUTE)] = (
        DEFAULT_CALLS_PER_MINUTE
    )
    look_back: Annotated[
        float, BeforeValidator(times.parse_duration), Field(ge=0, le=MAX_LOOK_BACK_S)
    ] = DEFAULT_LOOK_BACK_S
    daily_token_budget: Annotated[int, Field(ge=1, le=MAX_DAILY_TOKEN_BUDGET)] | None = None
    budget_share: Annotated[float, Field(gt=0, le=1)] = DEFAULT_BUDGET_SHARE
    instant: bool = True  # with [instant] set: false opts this account out

    @model_validator(mode="after")
    def _one_token_source(self) -> AccountConfig:
        if (self.api_token is None) == (self.api_token_file is None):
            raise ValueError("give exactly one of api_token or api_token_file")
        return self

    def token(self) -> SecretStr:
        """The API token, read from the file each time so a rotated file is picked up. A file
        that can no longer serve raises OSError or ValueError, naming the file, never the
        token."""
        if self.api_token is not None:
            return self.api_token
        assert self.api_token_file is not None
        text = token_text(self.api_token_file.read_text(encoding="utf-8"))
        if (found := control_character(text)) is not None:
            raise ValueError(
                f"api_token_file: the token contains {found} (got '{self.api_token_file}')"
            )
        return SecretStr(text)

    @property
    def api_root(self) -> str:
        return str(self.base_url).rstrip("/")


class SubscriptionConfig(_Frozen):
    name: Name
    account: str
    trigger: Annotated[str, AfterValidator(_check_trigger)]
    callback_url: HttpUrl
    # One secret, or several while rotating: every attempt carries one signature per secret.
    secret: Annotated[tuple[SecretStr, ...] | None, BeforeValidator(_signing_secrets)] = None
    poll_interval: PollInterval = DEFAULT_POLL_INTERVAL_S
    start: Annotated[Literal["now"] | datetime, BeforeValidator(_parse_start)] = "now"
    filter: dict[str, FilterValue] = {}
    include_custom_fields: bool = False
    allow_private_targets: bool = False  # may deliver to loopback, private, link-local addresses
    ordered: bool = False  # strict detection order: one event at a time, the next waits
    max_per_second: Annotated[int, Field(ge=1, le=MAX_PER_SECOND)] | None = None
    pause_after: Annotated[int, Field(ge=1)] | None = None  # default: [delivery] pause_after

    @property
    def secrets(self) -> tuple[SecretStr, ...]:
        """The signing secrets, newest first as written; empty when unsigned."""
        return self.secret or ()

    @property
    def endpoint(self) -> str:
        """The endpoint's fingerprint, which its health in the database is recorded with."""
        return endpoint_health.fingerprint(str(self.callback_url))

    @property
    def definition(self) -> triggers.Trigger:
        return triggers.get(self.trigger)

    @property
    def object_type(self) -> str:
        return self.definition.object.name

    def compiled_filter(self) -> filters.Filter:
        return filters.compile_filter(self.definition.object, self.filter)


class DeliveryConfig(_Frozen):
    timeout: DeliveryTimeout = DEFAULT_DELIVERY_TIMEOUT_S
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] = DEFAULT_MAX_ATTEMPTS
    retry_schedule: Annotated[tuple[RetryDelay, ...], Field(min_length=1, max_length=100)] = (
        DEFAULT_RETRY_SCHEDULE_S
    )
    jitter: Annotated[float, Field(ge=0, lt=1)] = DEFAULT_JITTER
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = DEFAULT_CONCURRENCY
    per_subscription_concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = (
        DEFAULT_PER_SUBSCRIPTION_CONCURRENCY
    )
    pause_after: Annotated[int, Field(ge=1)] = DEFAULT_PAUSE_AFTER
    probe_interval: Annotated[Duration, Field(le=MAX_PROBE_INTERVAL_S)] = DEFAULT_PROBE_INTERVAL_S
    max_body_bytes: Annotated[int, Field(ge=1024)] = DEFAULT_MAX_BODY_BYTES


class RetentionConfig(_Frozen):
    delivered: Annotated[Duration, Field(le=MAX_RETENTION_S)] = DEFAULT_RETENTION_DELIVERED_S
    interval: Annotated[Duration, Field(ge=1, le=MAX_RETENTION_INTERVAL_S)] = (
        DEFAULT_RETENTION_INTERVAL_S
    )


MIN_LEASE_S = 3.0
MAX_LEASE_S = 300.0
DEFAULT_LEASE_S = 10.0


def _default_instance() -> str:
    return f"{platform.node()}-{os.getpid()}"[:MAX_NAME_LENGTH]


class ClusterConfig(_Frozen):
    """Replicas on one PostgreSQL database: each account is polled by the replica holding its
    lease (see `service.leases`)."""

    # How long an account's lease lasts without renewal; renewed at a third of it.
    lease: Annotated[Duration, Field(ge=MIN_LEASE_S, le=MAX_LEASE_S)] = DEFAULT_LEASE_S
    # The replica's name in status, logs and metrics: unique among the replicas.
    instance: Name = Field(default_factory=_default_instance)


MIN_ADMIN_TOKEN_LENGTH = 16  # characters in `[admin] token_file`


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


def _check_listen(value: str | None) -> str | None:
    if value is not None:
        split_listen(value)
    return value


class AdminConfig(_Frozen):
    """The admin listener: /healthz, /readyz, /metrics and the admin page. Off by default."""

    listen: Annotated[str | None, AfterValidator(_check_listen)] = None
    token_file: Annotated[Path | None, BeforeValidator(_token_file)] = None

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self.listen is None else split_listen(self.listen)

    def token(self) -> SecretStr | None:
        """The bearer token requests need, when `token_file` is set."""
        if self.token_file is None:
            return None
        return SecretStr(token_text(self.token_file.read_text(encoding="utf-8")))


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


DEFAULT_INSTANT_RECONCILE_S = 600.0  # a nudged account is also polled at least this often
DEFAULT_INSTANT_REPAIR_S = 3600.0  # how often each account's webhook at Pipedrive is checked
DEFAULT_INSTANT_COALESCE_S = 1.0  # nudges within this window make one poll
MIN_INSTANT_REPAIR_S = 5.0  # each check lists the account's webhooks: 10 tokens
MAX_INSTANT_COALESCE_S = 60.0


def _check_public_url(value: str) -> str:
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


class InstantConfig(_Frozen):
    """Instant mode: Pipedrive's own webhooks nudge an account's feeds to poll now; polling
    stays the truth. Off unless `[instant]` is set; an account opts out with `instant = false`."""

    listen: Annotated[str, AfterValidator(_check_listen)]  # the ingress, e.g. 127.0.0.1:9466
    public_url: Annotated[str, AfterValidator(_check_public_url)]
    reconcile_interval: Annotated[Duration, Field(ge=1, le=MAX_DURATION_S)] = (
        DEFAULT_INSTANT_RECONCILE_S
    )
    repair_interval: Annotated[Duration, Field(ge=MIN_INSTANT_REPAIR_S, le=MAX_DURATION_S)] = (
        DEFAULT_INSTANT_REPAIR_S
    )
    coalesce: Annotated[
        float, BeforeValidator(times.parse_duration), Field(ge=0, le=MAX_INSTANT_COALESCE_S)
    ] = DEFAULT_INSTANT_COALESCE_S

    @property
    def address(self) -> tuple[str, int]:
        return split_listen(self.listen)

    def subscription_url(self, account: str) -> str:
        """The URL Pipedrive calls for `account`: `public_url` + "/" + its name, quoted (a
        name may hold any character but a control one)."""
        return f"{self.public_url}/{quote(account, safe='')}"


class Config(_Frozen):
    database: DatabaseConfig
    delivery: DeliveryConfig = DeliveryConfig()
    retention: RetentionConfig = RetentionConfig()
    admin: AdminConfig = AdminConfig()
    # Made per load, not at import: the default instance name holds this process's pid.
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    instant: InstantConfig | None = None
    accounts: list[AccountConfig]
    subscriptions: list[SubscriptionConfig] = []

    _by_name: dict[str, AccountConfig] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # A lookup a feed makes for each subscription: by name, so 1,000 accounts stay fast.
        self._by_name = {}
        for account in self.accounts:
            self._by_name.setdefault(account.name, account)

    def account(self, name: str) -> AccountConfig:
        return self._by_name[name]


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


def _cross_checks(
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


class _TokenFileOnly(_Frozen):
    api_token_file: Annotated[Path | None, BeforeValidator(_token_file)] = None


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
        for problem in _cross_checks(_resolve_paths(raw, base_dir), base_dir, origins)
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
