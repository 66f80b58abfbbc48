"""Per-subscription filters: `{pipeline_id = 2, stage_id = [3, 4]}` on an item's current state.

Keys are the API v2 field names of the trigger's object; a value is one value or a list of
alternatives. All keys must match; a list-valued field (`label_ids`) matches when any of its
values is among the alternatives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daemon.triggers.base import FilterField, Item, ObjectType

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false"}


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def problems(obj: ObjectType, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, reason) for every key that does not exist for `obj` or has a wrong value."""
    found: list[tuple[str, str]] = []
    valid = ", ".join(f.name for f in obj.filter_fields)
    for key, value in raw.items():
        spec = obj.filter_field(key)
        if spec is None:
            found.append((key, f"unknown filter key for {obj.name} (valid: {valid})"))
            continue
        alternatives = value if isinstance(value, list) else [value]
        wrong = [v for v in alternatives if not _is_kind(v, spec.kind)]
        if not alternatives:
            found.append((key, "needs at least one value"))
        elif wrong:
            found.append(
                (key, f"expected {_TYPE_NAMES[spec.kind]} or a list of them (got {value!r})")
            )
    return found


@dataclass(frozen=True)
class Filter:
    clauses: tuple[tuple[FilterField, frozenset[Any]], ...]

    def matches(self, item: Item) -> bool:
        for spec, allowed in self.clauses:
            value = item.get(spec.name)
            if spec.many:
                values = value if isinstance(value, list) else []
                if not any(_hashable(v) in allowed for v in values):
                    return False
            elif _hashable(value) not in allowed or not _is_kind(value, spec.kind):
                # `True == 1` in Python: a boolean must not match an integer filter.
                return False
        return True


def _hashable(value: Any) -> Any:
    return value if isinstance(value, int | str | bool | None) else repr(value)


def compile_filter(obj: ObjectType, raw: Mapping[str, Any]) -> Filter:
    """A validated filter (config checks `problems` first)."""
    clauses = []
    for key, value in raw.items():
        spec = obj.filter_field(key)
        if spec is None:
            raise ValueError(f"unknown filter key {key!r}")
        alternatives = value if isinstance(value, list) else [value]
        clauses.append((spec, frozenset(alternatives)))
    return Filter(tuple(clauses))
