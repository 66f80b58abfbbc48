"""Naming an item's custom fields as people see them in Pipedrive, not by their 40-char hashes.

v2 items carry `custom_fields: {<field_code>: value}`; the `*Fields` listings
(`GET /api/v2/dealFields`, `personFields`, `organizationFields`, `productFields`) say what each
code is called and what its option ids mean. What becomes of each value (the spec types values
only as "additionalProperties"; shapes from the v2 migration guide and the `subfields`):

- `enum`: an option id (`{id, label}` with `include_option_labels=true`) -> its label
- `set`: a list of option ids (or `{id, label}` objects) -> a list of labels
- everything else is kept exactly as Pipedrive gives it: `monetary` `{value, currency}`,
  `address` `{value, ..., formatted_address}`, `daterange`/`timerange` (an object with the
  start and `until`), `user`/`people`/`org` ids, text, numbers, dates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DISAMBIGUATING_PREFIX_LEN = 8
"""Characters of the field code appended to a name two custom fields share."""


@dataclass(frozen=True)
class FieldOption:
    id: int | str  # integer for custom fields, string for some built-in ones
    label: str


@dataclass(frozen=True)
class FieldDefinition:
    """One entry of a `*Fields` listing, reduced to what naming needs."""

    code: str  # `field_code`: the 40-character hash for custom fields
    name: str  # `field_name`, as shown in Pipedrive
    type: str  # `field_type`: enum, set, monetary, address, ...
    options: tuple[FieldOption, ...] = ()
    is_custom: bool = True  # `is_custom_field`; built-in fields never appear in `custom_fields`


def _option(raw: object) -> FieldOption | None:
    if not isinstance(raw, Mapping):
        return None
    option_id, label = raw.get("id"), raw.get("label")
    if isinstance(option_id, bool) or not isinstance(option_id, int | str):
        return None
    if not isinstance(label, str):
        return None
    return FieldOption(option_id, label)


def parse_field_definition(raw: object) -> FieldDefinition | None:
    """One definition, or None when `field_code`, `field_name` or `field_type` is missing.

    Unknown keys are ignored and a malformed option is dropped on its own, so one odd field
    (or a new Pipedrive attribute) cannot cost a subscription all its names.
    """
    if not isinstance(raw, Mapping):
        return None
    code, name, field_type = raw.get("field_code"), raw.get("field_name"), raw.get("field_type")
    if not (
        isinstance(code, str) and code and isinstance(name, str) and isinstance(field_type, str)
    ):
        return None
    raw_options = raw.get("options")
    options = (
        tuple(o for o in map(_option, raw_options) if o is not None)
        if isinstance(raw_options, list)
        else ()
    )
    is_custom = raw.get("is_custom_field")
    return FieldDefinition(
        code=code,
        name=name,
        type=field_type,
        options=options,
        # The spec requires the flag; without it, treating the field as custom only costs a
        # name suffix if it clashes, while treating it as built-in would hide its name.
        is_custom=is_custom if isinstance(is_custom, bool) else True,
    )


def parse_field_definitions(page: Iterable[object]) -> list[FieldDefinition]:
    """The `data` array of one `*Fields` page; malformed definitions are skipped."""
    return [d for d in map(parse_field_definition, page) if d is not None]


def _output_keys(definitions: Iterable[FieldDefinition]) -> dict[str, str]:
    """Each custom field's key in a webhook: its name, or `"Name (abcd1234)"` when several
    custom fields share the name.

    Every field of a shared name gets the suffix, not all but one: which one would keep the
    bare name depends on the listing order, and a consumer reading `"Priority"` must never be
    switched silently to another field when someone adds a second "Priority". The full code
    replaces the prefix when the prefix is shared too, or the result is another field's name.
    """
    custom = [d for d in definitions if d.is_custom]
    name_counts = Counter(d.name for d in custom)
    keys: dict[str, str] = {}
    for d in custom:
        if name_counts[d.name] == 1:
            keys[d.code] = d.name
    taken = set(keys.values())
    clashing = [d for d in custom if name_counts[d.name] > 1]
    short_counts = Counter((d.name, d.code[:DISAMBIGUATING_PREFIX_LEN]) for d in clashing)
    for d in sorted(clashing, key=lambda d: d.code):
        prefix = d.code[:DISAMBIGUATING_PREFIX_LEN]
        key = f"{d.name} ({prefix})"
        if short_counts[(d.name, prefix)] > 1 or key in taken:
            key = f"{d.name} ({d.code})"
        keys[d.code] = key
        taken.add(key)
    return keys


@dataclass(frozen=True)
class FieldCatalog:
    """One object type's custom fields, indexed once per refresh of its definitions."""

    keys: Mapping[str, str] = field(default_factory=dict)  # field code -> webhook key
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # code -> id -> label

    @classmethod
    def of(cls, definitions: Iterable[FieldDefinition]) -> FieldCatalog:
        """Index definitions from all pages; a code listed twice keeps its last definition."""
        by_code = {d.code: d for d in definitions}
        labels = {
            code: {str(o.id): o.label for o in d.options}
            for code, d in by_code.items()
            if d.options
        }
        return cls(keys=_output_keys(by_code.values()), labels=labels)


def _known_label(option_id: object, labels: Mapping[str, str]) -> str | None:
    # Ids are compared as strings: custom options have integer ids, some built-in ones string
    # ids, and v1-shaped values carry integers as strings.
    if isinstance(option_id, bool) or not isinstance(option_id, int | str):
        return None
    return labels.get(str(option_id))


def _label(value: Any, labels: Mapping[str, str]) -> Any:
    """An option's label; an id with no label is kept, so nothing is silently lost."""
    if isinstance(value, Mapping) and "id" in value:  # include_option_labels=true
        option_id = value["id"]
        pipedrive_label = value.get("label")
        fallback = pipedrive_label if isinstance(pipedrive_label, str) else option_id
        known = _known_label(option_id, labels)
        return fallback if known is None else known
    known = _known_label(value, labels)
    return value if known is None else known


def named_custom_fields(values: Mapping[str, Any] | None, catalog: FieldCatalog) -> dict[str, Any]:
    """An item's v2 `custom_fields` keyed by field name, option ids replaced by labels.

    A code missing from the catalog (a field created since the last refresh) keeps its hash as
    key, and empty fields keep their `None`: a consumer sees every field Pipedrive sent.
    """
    named: dict[str, Any] = {}
    for code, value in (values or {}).items():
        labels = catalog.labels.get(code)
        if labels is not None and value is not None:
            if isinstance(value, list):
                value = [_label(v, labels) for v in value]
            else:
                value = _label(value, labels)
        named[catalog.keys.get(code, code)] = value
    return named
