"""When a nudge's items are read one `GET .../{id}` each rather than by a listing."""

from __future__ import annotations

import pytest

from daemon import triggers
from daemon.polling import by_id


@pytest.mark.parametrize(
    ("object_type", "ids", "readable"),
    [
        ("deals", {"7"}, True),  # 1 token against a listing's 10
        ("deals", {str(n) for n in range(1, 6)}, True),
        ("deals", {str(n) for n in range(1, 7)}, False),  # a handful at most
        ("activities", {"3", "4"}, True),
        ("deals", set(), False),
        ("deals", {"7", "../users"}, False),  # only ids that look like ids
        ("notes", {"7"}, False),  # v1: read by its listing
        ("leads", {"00000001-5a1d-4b0c-8000-000000000001"}, False),
    ],
)
def test_items_are_read_by_id_where_it_costs_less(
    object_type: str, ids: set[str], readable: bool
) -> None:
    assert by_id.readable(triggers.OBJECT_TYPES[object_type], frozenset(ids)) is readable


def test_only_deals_list_deleted_items() -> None:
    listed = {name for name, obj in triggers.OBJECT_TYPES.items() if by_id.lists_deleted(obj)}
    assert listed == {"deals"}
