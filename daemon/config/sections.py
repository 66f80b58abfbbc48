"""The config's sections as frozen pydantic models, one per TOML table (`[database]`,
`[[accounts]]`, `[[subscriptions]]`, `[delivery]`, `[retention]`, `[cluster]`, `[admin]`,
`[instant]`), and `Config`, the whole file."""

from __future__ import annotations

import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    model_validator,
)

from daemon import times, triggers
from daemon.config.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_BUDGET_SHARE,
    DEFAULT_CALLS_PER_MINUTE,
    DEFAULT_CONCURRENCY,
    DEFAULT_DELIVERY_TIMEOUT_S,
    DEFAULT_INSTANT_COALESCE_S,
    DEFAULT_INSTANT_RECONCILE_S,
    DEFAULT_INSTANT_REPAIR_S,
    DEFAULT_JITTER,
    DEFAULT_LEASE_S,
    DEFAULT_LOOK_BACK_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PAUSE_AFTER,
    DEFAULT_PER_SUBSCRIPTION_CONCURRENCY,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_PROBE_INTERVAL_S,
    DEFAULT_RETENTION_DELIVERED_S,
    DEFAULT_RETENTION_INTERVAL_S,
    DEFAULT_RETRY_SCHEDULE_S,
    MAX_ATTEMPTS,
    MAX_CALLS_PER_MINUTE,
    MAX_CONCURRENCY,
    MAX_DAILY_TOKEN_BUDGET,
    MAX_DURATION_S,
    MAX_INSTANT_COALESCE_S,
    MAX_LEASE_S,
    MAX_LOOK_BACK_S,
    MAX_NAME_LENGTH,
    MAX_PER_SECOND,
    MAX_PROBE_INTERVAL_S,
    MAX_RETENTION_INTERVAL_S,
    MAX_RETENTION_S,
    MIN_INSTANT_REPAIR_S,
    MIN_LEASE_S,
)
from daemon.config.values import (
    DeliveryTimeout,
    Duration,
    FilterValue,
    Name,
    PollInterval,
    RetryDelay,
    check_listen,
    check_public_url,
    check_token,
    check_trigger,
    control_character,
    parse_start,
    signing_secrets,
    split_listen,
    token_file_path,
    token_text,
    token_value,
)
from daemon.model import endpoint_health
from daemon.triggers import filters


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseConfig(Frozen):
    url: str  # the loader fills the default: see default_database_dir


class AccountConfig(Frozen):
    name: Name
    api_token: Annotated[
        SecretStr | None, BeforeValidator(token_value), AfterValidator(check_token)
    ] = None
    api_token_file: Annotated[Path | None, BeforeValidator(token_file_path)] = None
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


class SubscriptionConfig(Frozen):
    name: Name
    account: str
    trigger: Annotated[str, AfterValidator(check_trigger)]
    callback_url: HttpUrl
    # One secret, or several while rotating: every attempt carries one signature per secret.
    secret: Annotated[tuple[SecretStr, ...] | None, BeforeValidator(signing_secrets)] = None
    poll_interval: PollInterval = DEFAULT_POLL_INTERVAL_S
    start: Annotated[Literal["now"] | datetime, BeforeValidator(parse_start)] = "now"
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


class DeliveryConfig(Frozen):
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


class RetentionConfig(Frozen):
    delivered: Annotated[Duration, Field(le=MAX_RETENTION_S)] = DEFAULT_RETENTION_DELIVERED_S
    interval: Annotated[Duration, Field(ge=1, le=MAX_RETENTION_INTERVAL_S)] = (
        DEFAULT_RETENTION_INTERVAL_S
    )


def _default_instance() -> str:
    return f"{platform.node()}-{os.getpid()}"[:MAX_NAME_LENGTH]


class ClusterConfig(Frozen):
    """Replicas on one PostgreSQL database: each account is polled by the replica holding its
    lease (see `service.leases`)."""

    # How long an account's lease lasts without renewal; renewed at a third of it.
    lease: Annotated[Duration, Field(ge=MIN_LEASE_S, le=MAX_LEASE_S)] = DEFAULT_LEASE_S
    # The replica's name in status, logs and metrics: unique among the replicas.
    instance: Name = Field(default_factory=_default_instance)


class AdminConfig(Frozen):
    """The admin listener: /healthz, /readyz, /metrics and the admin page. Off by default."""

    listen: Annotated[str | None, AfterValidator(check_listen)] = None
    token_file: Annotated[Path | None, BeforeValidator(token_file_path)] = None

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self.listen is None else split_listen(self.listen)

    def token(self) -> SecretStr | None:
        """The bearer token requests need, when `token_file` is set."""
        if self.token_file is None:
            return None
        return SecretStr(token_text(self.token_file.read_text(encoding="utf-8")))


class InstantConfig(Frozen):
    """Instant mode: Pipedrive's own webhooks nudge an account's feeds to poll now; polling
    stays the truth. Off unless `[instant]` is set; an account opts out with `instant = false`."""

    listen: Annotated[str, AfterValidator(check_listen)]  # the ingress, e.g. 127.0.0.1:9466
    public_url: Annotated[str, AfterValidator(check_public_url)]
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


class Config(Frozen):
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
