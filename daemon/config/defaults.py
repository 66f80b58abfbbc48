"""The config's defaults and bounds: named constants with units, so a default is said once and
every limit a value is checked against can be read in one place."""

from __future__ import annotations

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

# [cluster]: how long an account's lease lasts
MIN_LEASE_S = 3.0
MAX_LEASE_S = 300.0
DEFAULT_LEASE_S = 10.0

# [admin]
MIN_ADMIN_TOKEN_LENGTH = 16  # characters in `[admin] token_file`

# [instant]
DEFAULT_INSTANT_RECONCILE_S = 600.0  # a nudged account is also polled at least this often
DEFAULT_INSTANT_REPAIR_S = 3600.0  # how often each account's webhook at Pipedrive is checked
DEFAULT_INSTANT_COALESCE_S = 1.0  # nudges within this window make one poll
MIN_INSTANT_REPAIR_S = 5.0  # each check lists the account's webhooks: 10 tokens
MAX_INSTANT_COALESCE_S = 60.0
