"""JSON log lines carry the fields that operators filter on."""

from __future__ import annotations

import json
import logging

from daemon.logs import JsonFormatter


def test_json_lines_carry_action_subscription_and_event_id() -> None:
    record = logging.LogRecord(
        "daemon.delivery.deliverer",
        logging.WARNING,
        __file__,
        1,
        "subscription %r: %s",
        ("s", "boom"),
        None,
    )
    record.action = "delivery.failed"
    record.subscription = "s"
    record.event_id = "msg_1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "subscription 's': boom"
    assert (line["level"], line["action"], line["subscription"], line["event_id"]) == (
        "warning",
        "delivery.failed",
        "s",
        "msg_1",
    )
