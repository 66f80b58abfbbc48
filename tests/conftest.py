"""Shared fixtures: real SQLite and PostgreSQL databases, a served sandbox and webhook receiver."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from openapi_core import OpenAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import database, tables
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests import openapi_check
from tests.mounted import Mount, shared_server
from tests.notify_listener import NotifyListener

# CI and developers' machines run PostgreSQL here (trust auth); override for another server.
POSTGRES_ADMIN_URL = os.environ.get(
    "PIPEDRIVE_TRIGGERS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
API_TOKEN = "0123456789abcdef0123456789abcdef01234567"
SIGNING_SECRET = "whsec_" + base64.b64encode(b"test-signing-secret-32-bytes-long").decode()


MIN_WORKERS = 4
MAX_WORKERS = 8


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`'s worker count. Most tests wait on a daemon's 1 s poll, not on the CPU: two
    workers a core, at least four, at most eight (each has its own session fixtures and
    PostgreSQL database). Tests named by node id (`file.py::test`) run in this process."""
    given = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if given:
        return int(given)
    if config.args and all("::" in arg for arg in config.args):
        return 0
    return min(max(MIN_WORKERS, 2 * (os.cpu_count() or 1)), MAX_WORKERS)


# What systemd gives a unit's processes: a test run inside a unit must not inherit them.
SYSTEMD_ENVIRONMENT = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "STATE_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
)


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own settings must not leak into a test."""
    for name in list(os.environ):
        if name.startswith("PIPEDRIVE_TRIGGERS_") and name != "PIPEDRIVE_TRIGGERS_TEST_POSTGRES":
            monkeypatch.delenv(name)
    for name in SYSTEMD_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, migrated once, dropped at the end."""
    with scratch_postgres("pdt_test") as url:
        database.upgrade(url)
        yield url


def _empty_tables(url: str) -> None:
    engine = database.create_sync_engine(url)
    with engine.begin() as connection:
        for table in reversed(tables.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests get copies (alembic takes ~0.5 s, a
    copy a millisecond). Closed cleanly, it has no -wal file to copy along."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    database.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = str(request.getfixturevalue("postgres_url"))
    _empty_tables(url)
    return url


@pytest.fixture
def notify_listener(tmp_path: Path) -> Iterator[NotifyListener]:
    """systemd's side of the notify protocol, on a socket in the test's tmp dir."""
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="session")
def v2_spec() -> OpenAPI:
    return openapi_check.load_v2_spec()


# One server per role and session; each test mounts its own fresh app on it (tests.mounted).


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[tuple[Mount, str]]:
    with shared_server() as served:
        yield served


@pytest.fixture(scope="session")
def _consumer_server() -> Iterator[tuple[Mount, str]]:
    with shared_server() as served:
        yield served


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[tuple[Mount, str]]:
    with shared_server() as served:
        yield served


@pytest.fixture
def sandbox(_sandbox_server: tuple[Mount, str]) -> Iterator[Sandbox]:
    """A fresh sandbox account of this test's own, served on loopback."""
    mount, base_url = _sandbox_server
    fake = Sandbox(token=API_TOKEN)
    with mount.mounted(fake.app):
        fake.base_url = base_url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's database, opened as the daemon opens it."""
    engine = database.create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def consumer(_consumer_server: tuple[Mount, str]) -> Iterator[WebhookReceiver]:
    """A real webhook receiver on loopback that does not check signatures."""
    mount, base_url = _consumer_server
    receiver = WebhookReceiver()
    with mount.mounted(receiver):
        receiver.base_url = base_url  # type: ignore[attr-defined]
        yield receiver


@pytest.fixture
def receiver(_receiver_server: tuple[Mount, str]) -> Iterator[WebhookReceiver]:
    """A real webhook receiver on loopback that checks signatures with SIGNING_SECRET."""
    mount, base_url = _receiver_server
    consumer = WebhookReceiver(secret=SIGNING_SECRET)
    with mount.mounted(consumer):
        consumer.base_url = base_url  # type: ignore[attr-defined]
        yield consumer


def config_text(
    *,
    database_url: str,
    api_url: str,
    callback_url: str,
    subscriptions: list[dict[str, Any]],
    token: str = API_TOKEN,
    delivery: dict[str, Any] | None = None,
    calls_per_minute: int = 100,
) -> str:
    """A config file as a user would write it, so tests go through the real loader."""

    def value(item: Any) -> str:
        if isinstance(item, str):
            return f'"{item}"'
        if isinstance(item, list):
            return "[" + ", ".join(value(v) for v in item) + "]"
        if isinstance(item, dict):
            return "{" + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + "}"
        return str(item).lower() if isinstance(item, bool) else str(item)

    lines = ["[database]", f"url = {value(database_url)}", "", "[delivery]"]
    settings = {"retry_schedule": ["0.2s"], "max_attempts": 3, "timeout": 2, **(delivery or {})}
    lines += [f"{key} = {value(item)}" for key, item in settings.items()]
    lines += [
        "",
        "[[accounts]]",
        'name = "main"',
        f"api_token = {value(token)}",
        f"base_url = {value(api_url)}",
        f"calls_per_minute = {calls_per_minute}",
    ]
    for subscription in subscriptions:
        fields = {
            "account": "main",
            "callback_url": f"{callback_url}/hooks/{subscription['name']}",
            "secret": SIGNING_SECRET,
            "poll_interval": 1,
            "allow_private_targets": True,  # every receiver in the tests is on loopback
            **subscription,
        }
        lines += ["", "[[subscriptions]]"]
        lines += [f"{key} = {value(item)}" for key, item in fields.items()]
    return "\n".join(lines) + "\n"
