"""Log setup: readable lines for a terminal, or one JSON object per line for journald/Loki."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

# Fields that event-worthy log lines carry in `extra`, so JSON logs filter without regexes:
# who and what, then the figures (an attempt's number and HTTP status, when it is tried
# next, how long it took, counts).
EXTRA_FIELDS = (
    "action",
    "subscription",
    "event_id",
    "account",
    "item_id",
    "attempt",
    "status",
    "next_attempt_at",
    "took_seconds",
    "count",
    "pending",
    "dead",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {name: getattr(record, name) for name in EXTRA_FIELDS if hasattr(record, name)}
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_json = False


def is_json() -> bool:
    """Whether `setup` chose JSON lines: then the CLI's own error lines are JSON too."""
    return _json


def setup(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    global _json
    _json = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Request lines from the HTTP libraries are noise at INFO; our own lines say what matters.
    # aiosqlite logs every statement with its parameters at DEBUG: webhook passwords among them.
    for noisy in (
        "httpx", "httpcore", "apscheduler", "aiohttp", "uvicorn.access", "alembic", "aiosqlite",
    ):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
