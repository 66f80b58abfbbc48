"""The project's exception tree, so callers catch by meaning and messages name the thing.

PipedriveTriggersError
├── ConfigError                 bad config file: file, dotted key, value, reason
├── DatabaseError               cannot open or use the database (names the file or host)
│   ├── DatabaseInUse           another `run` holds the database's lock (file or advisory)
│   ├── SchemaOutOfDate         database behind the migrations' head revision: run migrate
│   └── SchemaTooNew            database written by a newer release: a downgrade, refused
├── PipedriveError              any failed Pipedrive API call (carries status, path)
│   ├── PipedriveAuthError      401: the API token was refused
│   ├── PipedriveForbidden      403
│   ├── PipedriveNotFound       404
│   ├── PipedriveBadRequest     400: Pipedrive's validation message
│   ├── PipedriveRateLimited    429 (retry_after seconds)
│   └── PipedriveUnavailable    5xx, timeouts, refused connections, garbage bodies
├── PayloadError                a Pipedrive object that cannot be mapped to a schema
├── TargetRefused               a callback address the subscription may not reach (address, kind)
├── AdminListenError            `[admin] listen` cannot be bound (address in use, not local)
├── IngressListenError          `[instant] listen` cannot be bound (address in use)
└── ArgumentError               a bad CLI or client argument, caught before any request
"""

from __future__ import annotations


class PipedriveTriggersError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(PipedriveTriggersError):
    """The config file is missing, unreadable or invalid; `problems` lists each one, and
    `files` the file each is in when it is an included one (None: the main file, `path`)."""

    def __init__(
        self, path: str, problems: list[str], files: list[str | None] | None = None
    ) -> None:
        self.path = path
        self.problems = problems
        self.files = files or [None] * len(problems)
        self.lines = [
            f"{file or path}: {problem}" for file, problem in zip(self.files, problems, strict=True)
        ]
        super().__init__("\n".join(self.lines))


class DatabaseError(PipedriveTriggersError):
    """The database cannot be used."""


class SchemaOutOfDate(DatabaseError):
    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database is at revision {current or 'none'}, the code needs {head}: "
            "run `pipedrive-triggers migrate`"
        )


class DatabaseInUse(DatabaseError):
    def __init__(self, database: str, lock: str, holder: str) -> None:
        self.database = database
        self.lock = lock
        self.holder = holder
        super().__init__(
            f"database {database} is in use by another `pipedrive-triggers run` ({holder}; "
            f"{lock}): stop that one first, two daemons would poll everything twice"
        )


class SchemaTooNew(DatabaseError):
    def __init__(self, current: str, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database is at revision {current}, written by a newer release than this one "
            f"(which knows up to {head}): install that newer release again, or restore the "
            "backup taken before the upgrade; `migrate` cannot go back"
        )


class PipedriveError(PipedriveTriggersError):
    """A Pipedrive API call failed. The message never contains the API token."""

    exit_code = 10

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        self.status = status
        self.path = path
        super().__init__(message)


class PipedriveBadRequest(PipedriveError):
    exit_code = 11


class PipedriveAuthError(PipedriveError):
    exit_code = 12


class PipedriveForbidden(PipedriveError):
    exit_code = 13


class PipedriveNotFound(PipedriveError):
    exit_code = 14


class PipedriveRateLimited(PipedriveError):
    exit_code = 15

    def __init__(self, message: str, *, retry_after: float, path: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(message, status=429, path=path)


class PipedriveUnavailable(PipedriveError):
    exit_code = 16


class PayloadError(PipedriveTriggersError, ValueError):
    """A Pipedrive object that cannot be mapped; names the object and the field."""

    exit_code = 1

    def __init__(self, obj: str, field: str, problem: str) -> None:
        super().__init__(f"{obj}: field {field!r}: {problem}")
        self.obj = obj
        self.field = field
        self.problem = problem


class TargetRefused(PipedriveTriggersError):
    """The callback is (or resolves to) a loopback, private or link-local address and its
    subscription does not set `allow_private_targets`. Not an OSError, so aiohttp passes it
    through as it is instead of reporting it as a DNS failure."""

    def __init__(self, address: str, kind: str, message: str) -> None:
        self.address = address
        self.kind = kind
        super().__init__(message)


class ArgumentError(PipedriveTriggersError):
    """A bad argument, rejected before any request is sent."""

    exit_code = 2


class AdminListenError(PipedriveTriggersError):
    """The admin listener cannot listen where the config says: exit 3, like a bad config."""

    exit_code = 3


class IngressListenError(PipedriveTriggersError):
    """Instant mode's ingress cannot listen where the config says: exit 3, like a bad config."""

    exit_code = 3


def describe(error: BaseException) -> str:
    """An error as a record shows it (a subscription's last error, a dead letter's reason): a
    Pipedrive error's own message names the call; anything else is named by its type too."""
    if isinstance(error, PipedriveError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class LeaseLost(DatabaseError):
    """A write made under a lease that another replica has taken since (fencing)."""

    def __init__(self, lease: str, epoch: int) -> None:
        self.lease = lease
        self.epoch = epoch
        super().__init__(
            f"lease {lease!r} (epoch {epoch}) is no longer held by this replica, so this "
            "write was refused"
        )


class InstanceNameInUse(DatabaseError):
    def __init__(self, instance: str, holder: str) -> None:
        super().__init__(
            f"[cluster] instance {instance!r} is the name of a replica that is running ({holder}):"
            " give each replica its own name, or leave `instance` unset for <hostname>-<pid>"
        )
