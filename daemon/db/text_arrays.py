"""A PostgreSQL `text[]` parameter that psycopg sends in binary, for large arrays of JSON.

psycopg sends a Python list in its text format by default, `{"...","..."}`, and escapes every
double quote and backslash of every element with a regular expression in Python: for a page
of 500 event bodies (~1.2 kB of JSON each) that was 40-50 ms of the daemon's CPU, a tenth of
all it spent on a backlog. In binary each element is just its UTF-8 bytes behind a length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class _Binary(list[Any]):
    """A list psycopg dumps in binary (registered below); any other list keeps the default."""


psycopg.adapters.register_dumper(_Binary, ListBinaryDumper)


class TextArray(TypeDecorator[Sequence[str | None]]):
    """`ARRAY(Text)` on PostgreSQL whose bound value goes to psycopg in binary."""

    impl = postgresql.ARRAY(Text)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        # ARRAY's own processor copies the value into a plain list: replaced, not composed.
        return _binary


def _binary(value: Sequence[str | None] | None) -> _Binary | None:
    return None if value is None else _Binary(value)
