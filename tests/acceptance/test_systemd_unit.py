"""The systemd unit as systemd itself reads it: valid, hardened, and matching the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import config, times

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "pipedrive-triggers.service"
INSTALLED_EXEC = "/opt/pipedrive-triggers/.venv/bin/pipedrive-triggers"
ACCEPTABLE_EXPOSURE = ("PERFECT", "SAFE", "OK")  # systemd-analyze security's best levels
STOP_MARGIN_S = 10  # after the delivery grace: the last outcomes' writes, the engine's close
MIN_OPEN_FILES = 16 * 1024  # LimitNOFILE=: well above systemd's default soft limit of 1024


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
    return subprocess.run(
        ["systemd-analyze", "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def seconds(value: str) -> float:
    return times.parse_duration(value.removesuffix("ec"))  # "30s", "30sec", "30"


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart at this venv's command, so verify can check the binary."""
    here = Path(sys.executable).parent / "pipedrive-triggers"
    assert here.is_file(), "pip install -e . puts the command beside the venv's python"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={INSTALLED_EXEC} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_EXEC} ", f"ExecStart={here} "))
    return copy


def test_systemd_analyze_verify_has_no_complaint(unit_copy: Path) -> None:
    result = systemd_analyze("verify", str(unit_copy))
    complaints = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_systemd_analyze_security_rates_it_ok_or_better(unit_copy: Path) -> None:
    result = systemd_analyze("security", "--offline=yes", str(unit_copy))
    assert result.returncode == 0, result.stderr
    found = re.search(
        rf"Overall exposure level for {re.escape(UNIT.name)}: (\d+\.\d+) (\w+)", result.stdout
    )
    assert found, result.stdout
    score, level = float(found.group(1)), found.group(2)
    assert level in ACCEPTABLE_EXPOSURE, f"exposure {score} {level}:\n{result.stdout}"
    assert not [line for line in result.stderr.splitlines() if UNIT.name in line], result.stderr


def test_unit_matches_what_the_daemon_does() -> None:
    unit = settings(UNIT.read_text(encoding="utf-8"))
    assert unit["Type"] == ["notify"], "the daemon sends READY=1"
    assert seconds(unit["WatchdogSec"][0]) > 0, "pinged at half of it, from the event loop"
    assert seconds(unit["TimeoutStopSec"][0]) >= config.DEFAULT_DELIVERY_TIMEOUT_S + STOP_MARGIN_S
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == unit["ConfigurationDirectory"] == ["pipedrive-triggers"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["LoadCredential"] == ["pipedrive-token:/etc/pipedrive-triggers/pipedrive-token"]
    assert unit["Environment"] == [f"{config.CONFIG_ENV_VAR}=/etc/pipedrive-triggers/config.toml"]
    assert unit["MemoryDenyWriteExecute"] == ["yes"], "test_systemd_notify runs it under MDWE"
    # Deliveries, the database and the admin listener's connections share the descriptors.
    (files,) = unit["LimitNOFILE"]
    assert int(files) >= MIN_OPEN_FILES
