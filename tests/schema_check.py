"""Judge a payload by the connector's published schemas, so every test checks the same contract."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

# CI clones the repository next to `shared/`, as on a developer's machine.
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
SCHEMAS_PATH = SHARED_DIR / "connector-schemas.json"


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_instant(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_hh_mm(text: str) -> bool:
    # Durations share this format, so hours may pass 23.
    match = re.fullmatch(r"(\d{2,}):(\d{2})", text)
    return match is not None and int(match[2]) < 60


# Every format the schemas use; an unknown one fails loudly rather than going unchecked.
FORMATS: dict[str, Callable[[str], bool]] = {
    "yyyy-MM-ddTHH:mm:ss.fffZ": _is_instant,
    "yyyy-MM-dd": _is_date,
    "YYYY-MM-DD": _is_date,
    "HH:MM": _is_hh_mm,
}

TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "date-time": lambda v: isinstance(v, str),
}


@functools.cache
def load_schemas() -> dict[str, dict[str, dict[str, Any]]]:
    """Schema name -> dotted path -> {type, format, description}."""
    schemas: dict[str, dict[str, dict[str, Any]]] = json.loads(SCHEMAS_PATH.read_text())["schemas"]
    return schemas


def schema_fields(schema_name: str) -> dict[str, dict[str, Any]]:
    return load_schemas()[schema_name]


def leaf_paths(obj: Mapping[str, Any], schema_name: str) -> dict[str, Any]:
    """Dotted leaf path -> value; a null object stands for its schema's children, all null."""
    paths = schema_fields(schema_name)
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            children = [p for p in paths if p.startswith(f"{path}.")]
            if isinstance(value, Mapping):
                walk(value, f"{path}.")
            elif value is None and children:
                flat.update(dict.fromkeys(children))
            else:
                flat[path] = value

    walk(obj, "")
    return flat


def schema_problems(obj: Mapping[str, Any], schema_name: str) -> list[str]:
    """Every way `obj` departs from the schema; empty when it matches. Nulls are allowed."""
    fields = schema_fields(schema_name)
    flat = leaf_paths(obj, schema_name)
    problems = [f"missing {path}" for path in fields if path not in flat]
    problems += [f"unexpected {path}" for path in flat if path not in fields]
    for path, value in flat.items():
        spec = fields.get(path)
        if spec is None or value is None:
            continue
        if not TYPES[spec["type"]](value):
            problems.append(f"{path}: expected {spec['type']}, got {value!r}")
        elif spec["format"] is not None and not FORMATS[spec["format"]](value):
            problems.append(f"{path}: expected format {spec['format']}, got {value!r}")
    return problems


def assert_matches_schema(obj: Mapping[str, Any], schema_name: str) -> None:
    """Fail naming every missing, extra, mistyped or misformatted path of `obj`."""
    problems = schema_problems(obj, schema_name)
    if problems:
        raise AssertionError(f"{schema_name}: " + "; ".join(problems))
