"""The benchmarks' PostgreSQL: the tests' server (trust auth on 127.0.0.1), started if down."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import sqlalchemy

POSTGRES_ADMIN_URL = os.environ.get(
    "PIPEDRIVE_TRIGGERS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def ensure_running() -> None:
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL)
    try:
        with admin.connect():
            return
    except sqlalchemy.exc.OperationalError:
        pass
    finally:
        admin.dispose()
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        raise RuntimeError("PostgreSQL is not running and no local cluster to start")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True
    )
