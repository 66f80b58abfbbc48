"""The config file: one TOML file (and the files it includes), validated once into frozen
pydantic models.

`defaults` holds the defaults and bounds, `values` the checks of single values, `sections` the
models, `cross_checks` what spans fields, `loading` parse and load with their error wording,
`includes` the included files. Callers import from here: `config.load(...)`, `config.Config`.
"""

from __future__ import annotations

from daemon.config.defaults import (
    CONFIG_ENV_VAR,
    DEFAULT_CALLS_PER_MINUTE,
    DEFAULT_CONCURRENCY,
    DEFAULT_DELIVERY_TIMEOUT_S,
    DEFAULT_INSTANT_COALESCE_S,
    DEFAULT_INSTANT_RECONCILE_S,
    DEFAULT_INSTANT_REPAIR_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PER_SUBSCRIPTION_CONCURRENCY,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_RETRY_SCHEDULE_S,
)
from daemon.config.loading import (
    NO_SUBSCRIPTIONS,
    default_database_dir,
    fingerprint,
    load,
    load_to_run,
    load_without_secrets,
    log_startup_warnings,
    parse,
    startup_warnings,
)
from daemon.config.sections import (
    AccountConfig,
    AdminConfig,
    ClusterConfig,
    Config,
    DatabaseConfig,
    DeliveryConfig,
    InstantConfig,
    RetentionConfig,
    SubscriptionConfig,
)
from daemon.config.values import (
    EARLIEST_TIME,
    LATEST_TIME,
    control_character,
    is_loopback,
    split_listen,
    token_text,
)
from daemon.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CALLS_PER_MINUTE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_DELIVERY_TIMEOUT_S",
    "DEFAULT_INSTANT_COALESCE_S",
    "DEFAULT_INSTANT_RECONCILE_S",
    "DEFAULT_INSTANT_REPAIR_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PER_SUBSCRIPTION_CONCURRENCY",
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_RETRY_SCHEDULE_S",
    "EARLIEST_TIME",
    "LATEST_TIME",
    "NO_SUBSCRIPTIONS",
    "AccountConfig",
    "AdminConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DeliveryConfig",
    "InstantConfig",
    "RetentionConfig",
    "SubscriptionConfig",
    "control_character",
    "default_database_dir",
    "fingerprint",
    "is_loopback",
    "load",
    "load_to_run",
    "load_without_secrets",
    "log_startup_warnings",
    "parse",
    "split_listen",
    "startup_warnings",
    "token_text",
]
