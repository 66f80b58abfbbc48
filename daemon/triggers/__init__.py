"""The trigger registry: every `TRIGGERS` tuple of this package's modules, by name.

Adding a trigger (say `product.added`) is one new module here; nothing else names it. A trigger
is declared directly, `Trigger("activity.added", ACTIVITIES, "added", created_since_start,
payload=payloads.ACTIVITY)`: its `payload` (default `payloads.PASSTHROUGH`, the API object
itself) says how `data` is built, which lookups it needs and which schema it follows.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from daemon.triggers.base import ObjectType, Trigger

__all__ = ["OBJECT_TYPES", "REGISTRY", "ObjectType", "Trigger", "get"]


def _collect() -> dict[str, Trigger]:
    found: dict[str, Trigger] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for trigger in getattr(module, "TRIGGERS", ()):
            if trigger.name in found:
                raise RuntimeError(f"trigger {trigger.name!r} is defined twice")
            found[trigger.name] = trigger
    return found


REGISTRY: Mapping[str, Trigger] = _collect()
OBJECT_TYPES: Mapping[str, ObjectType] = {t.object.name: t.object for t in REGISTRY.values()}


def get(name: str) -> Trigger:
    return REGISTRY[name]
