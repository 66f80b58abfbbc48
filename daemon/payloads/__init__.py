"""What consumers receive: Pipedrive objects mapped onto the connector's shapes (`shapes`), one
`Payload` value per shape (here: `DEAL_V2`, `DEAL_LEGACY`, `ACTIVITY`, `PASSTHROUGH`), and the
webhook envelope with its stable event id (`envelope`). Pure mapping, no I/O.

May import the foundation and `pipedrive` (for lookups' types and custom field names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.payloads import shapes
from daemon.pipedrive import lookups
from daemon.pipedrive.custom_fields import FieldCatalog, named_custom_fields

__all__ = ["ACTIVITY", "DEAL_LEGACY", "DEAL_V2", "PASSTHROUGH", "Mapper", "Needs", "Payload"]

Mapper = Callable[[Mapping[str, Any], lookups.Lookups], dict[str, Any]]
Needs = Callable[[Iterable[Mapping[str, Any]]], lookups.LookupRequest]


def _no_lookups(_items: Iterable[Mapping[str, Any]]) -> lookups.LookupRequest:
    return lookups.LookupRequest()


def _passthrough(item: Mapping[str, Any], _lookups: lookups.Lookups) -> dict[str, Any]:
    return dict(item)


@dataclass(frozen=True)
class Payload:
    """One shape of `data`: how an object maps onto it (`mapper`), which related objects the
    mapping names (`needs`, gathered for a whole batch before any is mapped), and the connector
    schema it follows (`schema`; None when `data` is the API object itself)."""

    mapper: Mapper
    needs: Needs = _no_lookups
    schema: str | None = None

    def data(
        self,
        item: Mapping[str, Any],
        resolved: lookups.Lookups,
        catalog: FieldCatalog | None = None,
    ) -> dict[str, Any]:
        """`item` in this shape; with a `catalog`, plus its custom fields by name."""
        mapped = self.mapper(item, resolved)
        if catalog is not None:
            values = item.get("custom_fields")
            mapped["custom_fields"] = named_custom_fields(
                values if isinstance(values, Mapping) else None, catalog
            )
        return mapped


DEAL_V2 = Payload(shapes.deal_v2, lookups.needed_for_deals, "DealResponseV2")
DEAL_LEGACY = Payload(shapes.deal_legacy, lookups.needed_for_deals, "DealResponse")
ACTIVITY = Payload(shapes.activity, lookups.needed_for_activities, "ActivityResponse")
PASSTHROUGH = Payload(_passthrough)
"""`data` is the API object itself (persons, organizations, notes, leads)."""
