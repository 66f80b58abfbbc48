"""systemd/README.md's `pdt()` runs the command line as the service itself runs: the same
user, state directory, credential and environment. A transient unit with DynamicUser= and
no User= gets a dynamic user of its own, and systemd hands the state directory (the SQLite
database) to that user, away from the running service."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "pipedrive-triggers.service"
README = REPO / "systemd" / "README.md"


def unit_settings() -> dict[str, str]:
    found = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found[key] = value
    return found


def wrapper_settings() -> tuple[dict[str, str], dict[str, str]]:
    """The `-p` properties and `-E` variables of the README's `pdt()`."""
    body = re.search(r"pdt\(\) \{\n(.*?)\n\}", README.read_text(encoding="utf-8"), re.S)
    assert body, "systemd/README.md defines pdt()"
    words = shlex.split(body[1].replace("\\\n", " "))
    properties, variables = {}, {}
    for flag, value in itertools.pairwise(words):
        if flag == "-p":
            key, _, setting = value.partition("=")
            properties[key] = setting
        elif flag == "-E":
            key, _, setting = value.partition("=")
            variables[key] = setting
    return properties, variables


def test_pdt_runs_as_the_services_own_user_with_its_settings() -> None:
    unit = unit_settings()
    properties, variables = wrapper_settings()
    # The service's dynamic user is named after the unit (it sets no User=): same name, same
    # UID while the service runs, so the state directory is not chowned away from it.
    assert properties.get("User") == unit.get("User", UNIT.stem), properties
    for key in ("DynamicUser", "StateDirectory", "LoadCredential", "EnvironmentFile"):
        assert properties.get(key) == unit[key], key
    assert (
        f"PIPEDRIVE_TRIGGERS_CONFIG={variables['PIPEDRIVE_TRIGGERS_CONFIG']}"
        == (unit["Environment"])
    )
