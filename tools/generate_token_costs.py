"""Regenerate `daemon/pipedrive/token_costs.json`: every operation's `x-token-cost` from Pipedrive's
OpenAPI files, by method and route template (`GET /api/v2/deals/{id}`), for `api_costs`.

Run from the repository root after the OpenAPI files change, and commit the result:

    .venv/bin/python tools/generate_token_costs.py [SHARED_DIR]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "daemon" / "pipedrive" / "token_costs.json"
SPECS = {"/v1": "pipedrive-v1.2026-08-18.yaml", "/api/v2": "pipedrive-v2.2026-08-18.yaml"}
METHODS = {"get", "post", "put", "patch", "delete"}
_PARAMETER = re.compile(r"\{[^}]+\}")


def costs(shared: Path) -> dict[str, int]:
    """`"METHOD /prefix/route/{id}"` -> tokens; every path parameter is written `{id}`, as
    `api_costs.route` writes an id in a request path."""
    table: dict[str, int] = {}
    for prefix, name in SPECS.items():
        text = (shared / "pipedrive-openapi" / name).read_text(encoding="utf-8")
        spec = yaml.load(text, Loader=yaml.CSafeLoader)  # libyaml: 5x the pure-Python loader
        for path, operations in spec["paths"].items():
            template = prefix + _PARAMETER.sub("{id}", path).rstrip("/")
            for method, operation in operations.items():
                if method in METHODS and "x-token-cost" in operation:
                    table[f"{method.upper()} {template}"] = int(operation["x-token-cost"])
    return dict(sorted(table.items()))


def main(shared: Path) -> None:
    OUT.write_text(json.dumps(costs(shared), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared")
