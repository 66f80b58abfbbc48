"""The action commands end to end: `python -m daemon` as a subprocess against a served sandbox.

Checks what a script calling the CLI relies on: the JSON on stdout matches the connector's
schema, each failure is one line on stderr with its own exit code, a bad argument sends no
request, and neither a traceback nor the API token ever shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.dev.local_server import LocalServer, serve
from daemon.dev.sandbox import Sandbox
from tests import processes
from tests.schema_check import assert_matches_schema

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-acceptance-token-0123456789abcdef"
WRONG_TOKEN = "revoked-token-fedcba9876543210"
CLI_TIMEOUT_S = 30
TEST_BURST = 10_000  # each command makes several calls; the tests run them back to back
EXIT_BAD_ARGUMENT = 2
PROJECT_ENV_PREFIX = "PIPEDRIVE_TRIGGERS_"


@dataclass
class World:
    sandbox: Sandbox
    server: LocalServer
    config: Path  # one account, "main"
    two_accounts: Path  # "main" and "spare"
    wrong_token: Path
    person: dict[str, Any]
    org: dict[str, Any]
    partners: dict[str, Any]

    def stage(self, pipeline_id: int, name: str) -> int:
        return int(
            next(
                s["id"]
                for s in self.sandbox.stages
                if s["pipeline_id"] == pipeline_id and s["name"] == name
            )
        )


def _account(name: str, token: str, base_url: str) -> str:
    return f'[[accounts]]\nname = "{name}"\napi_token = "{token}"\nbase_url = "{base_url}"\n'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = Sandbox(token=TOKEN)
    sandbox.set_limits(burst=TEST_BURST)
    org = sandbox.add_organization("Analytical Engines Ltd")
    person = sandbox.add_person("Ada Lovelace", org_id=org["id"])
    partners = sandbox.add_pipeline("Partnerships", ["Prospect", "Signed"])
    directory = tmp_path_factory.mktemp("cli")
    with serve(sandbox.app) as server:
        url = server.base_url
        files = {
            "config.toml": _account("main", TOKEN, url),
            "two.toml": _account("main", TOKEN, url) + _account("spare", TOKEN, url),
            "wrong.toml": _account("main", WRONG_TOKEN, url),
        }
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        yield World(
            sandbox,
            server,
            directory / "config.toml",
            directory / "two.toml",
            directory / "wrong.toml",
            person,
            org,
            partners,
        )


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(config: Path, *args: str) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_ENV_PREFIX)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = processes.run(["--config", str(config), *args], env=env, timeout=CLI_TIMEOUT_S)
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    return outcome


def assert_one_line_error(outcome: Outcome, code: int, message: str) -> None:
    assert outcome.code == code, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert message in lines[0], lines[0]


# -- every command's output --------------------------------------------------------------------


def test_deals_get(world: World) -> None:
    deal = world.sandbox.add_deal("Fetched", person_id=world.person["id"], value=250)
    result = run_cli(world.config, "deals", "get", str(deal["id"]))
    assert result.code == 0, result.stderr
    printed = result.json()
    assert_matches_schema(printed, "DealResponse")
    assert (printed["title"], printed["stage_name"], printed["value"]) == (
        "Fetched",
        "Qualified",
        250,
    )
    assert printed["person_id"] == {"name": "Ada Lovelace", "value": world.person["id"]}
    assert result.stdout.startswith('{\n  "id": ')  # indent 2


def test_deals_add_v2_and_legacy(world: World) -> None:
    signed = world.stage(world.partners["id"], "Signed")
    v2 = run_cli(
        world.config,
        "deals", "add", "--title", "CLI deal", "--pipeline-id", str(world.partners["id"]),
        "--stage-id", str(signed), "--status", "open", "--value", "1200.50",
        "--currency", "usd", "--person-id", str(world.person["id"]),
        "--org-id", str(world.org["id"]), "--expected-close-date", "2026-12-31",
        "--visible-to", "entire company",
    )  # fmt: skip
    assert v2.code == 0, v2.stderr
    added = v2.json()
    assert_matches_schema(added, "DealResponseV2")
    assert (added["title"], added["stage_id"], added["value"], added["currency"]) == (
        "CLI deal",
        signed,
        1200.5,
        "USD",
    )
    assert (added["org_id"]["name"], added["visible_to"]) == ("Analytical Engines Ltd", "3")
    legacy = run_cli(world.config, "deals", "add", "--title", "Old style", "--legacy")
    assert legacy.code == 0, legacy.stderr
    assert_matches_schema(legacy.json(), "DealResponse")
    assert legacy.json()["stage_name"] == "Qualified"


def test_deals_update_stage_v2_and_legacy(world: World) -> None:
    deal = world.sandbox.add_deal("Moving")
    prospect = world.stage(world.partners["id"], "Prospect")
    v2 = run_cli(
        world.config,
        "deals", "update-stage", str(deal["id"]), "--stage-id", str(prospect),
        "--pipeline-id", str(world.partners["id"]), "--expected-close-date", "2027-03-01",
    )  # fmt: skip
    assert v2.code == 0, v2.stderr
    assert_matches_schema(v2.json(), "DealResponseV2")
    assert (v2.json()["stage_id"], v2.json()["expected_close_date"]) == (prospect, "2027-03-01")
    legacy = run_cli(
        world.config, "deals", "update-stage", str(deal["id"]), "--stage-id", "2", "--legacy"
    )
    assert legacy.code == 0, legacy.stderr
    assert_matches_schema(legacy.json(), "DealResponse")
    assert (legacy.json()["stage_name"], legacy.json()["pipeline_id"]) == ("Contact Made", 1)


def test_deals_update_status(world: World) -> None:
    deal = world.sandbox.add_deal("Lost one")
    result = run_cli(
        world.config,
        "deals", "update-status", str(deal["id"]), "--status", "lost", "--lost-reason", "Budget",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert_matches_schema(result.json(), "DealResponse")
    assert (result.json()["status"], result.json()["lost_reason"]) == ("lost", "Budget")


def test_stages_get(world: World) -> None:
    signed = world.stage(world.partners["id"], "Signed")
    result = run_cli(world.config, "stages", "get", str(signed))
    assert result.code == 0, result.stderr
    assert_matches_schema(result.json(), "StageResponse")
    assert result.json() == {"id": signed, "name": "Signed"}


def test_activities_add(world: World) -> None:
    deal = world.sandbox.add_deal("Call about")
    result = run_cli(
        world.two_accounts,
        "activities", "add", "--type", "call", "--subject", "Follow up",
        "--due-date", "2026-12-02", "--due-time", "14:00", "--duration", "00:30",
        "--note", "Ask about €", "--user-id", str(world.sandbox.me["id"]),
        "--deal-id", str(deal["id"]), "--person-id", str(world.person["id"]),
        "--org-id", str(world.org["id"]), "--account", "spare",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    printed = result.json()
    assert_matches_schema(printed, "ActivityResponse")
    assert (printed["deal_title"], printed["person_name"], printed["org_name"]) == (
        "Call about",
        "Ada Lovelace",
        "Analytical Engines Ltd",
    )
    assert (printed["due_time"], printed["duration"], printed["note"]) == (
        "14:00",
        "00:30",
        "Ask about €",
    )


# -- bad arguments: exit 2, one line, no request -----------------------------------------------

BAD_ARGUMENTS: list[tuple[str, list[str], str]] = [
    ("deal id", ["deals", "get", "abc"], "ID: expected a positive integer id, got 'abc'"),
    ("missing title", ["deals", "add"], "--title: required"),
    ("close date", ["deals", "add", "--title", "T", "--expected-close-date", "2026-13-01"],
     "--expected-close-date: expected yyyy-MM-dd, got '2026-13-01'"),
    ("visible_to", ["deals", "add", "--title", "T", "--visible-to", "2"],
     "--visible-to: expected 1, 3, 5, 7, owner, followers or entire company, got '2'"),
    ("currency", ["deals", "add", "--title", "T", "--currency", "EURO"],
     "--currency: expected a 3-letter currency code, got 'EURO'"),
    ("value", ["deals", "add", "--title", "T", "--value", "ten"],
     "--value: expected a number, got 'ten'"),
    ("legacy pipeline", ["deals", "add", "--title", "T", "--pipeline-id", "1", "--legacy"],
     "--pipeline-id: not a parameter of the legacy Add deal action"),
    ("v2 stage needs pipeline", ["deals", "update-stage", "1", "--stage-id", "2"],
     "--pipeline-id: required by Update deal stage (V2)"),
    ("status", ["deals", "update-status", "1", "--status", "deleted"],
     "--status: expected open | won | lost, got 'deleted'"),
    ("lost reason", ["deals", "update-status", "1", "--status", "won", "--lost-reason", "x"],
     "--lost-reason: only allowed with status lost"),
    ("stage id", ["stages", "get", "0"], "ID: expected a positive integer id, got '0'"),
    ("due date", ["activities", "add", "--type", "call", "--subject", "S",
                  "--due-date", "2026-02-30"], "--due-date: expected yyyy-MM-dd, got '2026-02-30'"),
    ("due time", ["activities", "add", "--type", "call", "--subject", "S", "--due-time", "24:00"],
     "--due-time: expected HH:MM, got '24:00'"),
    ("duration", ["activities", "add", "--type", "call", "--subject", "S", "--duration", "1:30"],
     "--duration: expected HH:MM, got '1:30'"),
    ("unknown account", ["stages", "get", "1", "--account", "nope"],
     "--account: no account named 'nope' (known: main)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [(args, message) for _, args, message in BAD_ARGUMENTS],
    ids=[name for name, _, _ in BAD_ARGUMENTS],
)
def test_bad_argument_sends_nothing(world: World, args: list[str], message: str) -> None:
    before = len(world.sandbox.calls)
    result = run_cli(world.config, *args)
    assert_one_line_error(result, EXIT_BAD_ARGUMENT, message)
    assert len(world.sandbox.calls) == before


def test_several_accounts_need_account(world: World) -> None:
    before = len(world.sandbox.calls)
    result = run_cli(world.two_accounts, "stages", "get", "1")
    assert_one_line_error(
        result, EXIT_BAD_ARGUMENT, "--account: required, the config has several accounts"
    )
    assert "main, spare" in result.stderr
    assert len(world.sandbox.calls) == before


# -- Pipedrive's errors: one line each, with the error's own exit code ---------------------------


def _fault(status: int) -> Callable[[World], list[str]]:
    def arrange(world: World) -> list[str]:
        world.sandbox.faults.add(status=status, path_prefix="/api/v2/stages/")
        return ["stages", "get", "1"]

    return arrange


def _stage_not_in_pipeline(world: World) -> list[str]:
    deal = world.sandbox.add_deal("Misplaced")
    signed = world.stage(world.partners["id"], "Signed")
    return ["deals", "update-stage", str(deal["id"]), "--stage-id", str(signed),
            "--pipeline-id", "1"]  # fmt: skip


def _unknown_person(world: World) -> list[str]:
    return ["deals", "add", "--title", "Ghost", "--person-id", "9999"]


def _unknown_deal(world: World) -> list[str]:
    return ["deals", "get", "999999"]


PIPEDRIVE_ERRORS: list[tuple[str, Callable[[World], list[str]], int, str]] = [
    ("400 stage not in pipeline", _stage_not_in_pipeline, 11, "is not in pipeline 1"),
    ("400 invalid field", _unknown_person, 11,
     "POST /api/v2/deals: Pipedrive answered 400: Person with id 9999 does not exist"),
    ("403", _fault(403), 13, "GET /api/v2/stages/1: Pipedrive answered 403"),
    ("404 unknown deal", _unknown_deal, 14,
     "GET /api/v2/deals/999999: Pipedrive answered 404: Deal not found"),
    ("429", _fault(429), 15, "GET /api/v2/stages/1: Pipedrive answered 429"),
    ("500", _fault(500), 16, "GET /api/v2/stages/1: Pipedrive answered 500"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("arrange", "code", "message"),
    [(arrange, code, message) for _, arrange, code, message in PIPEDRIVE_ERRORS],
    ids=[name for name, _, _, _ in PIPEDRIVE_ERRORS],
)
def test_pipedrive_error(
    world: World, arrange: Callable[[World], list[str]], code: int, message: str
) -> None:
    args = arrange(world)
    try:
        result = run_cli(world.config, *args)
    finally:
        world.sandbox.faults.clear()
    assert_one_line_error(result, code, message)
    assert result.stderr.startswith("pipedrive-triggers: account 'main': ")


def test_wrong_token(world: World) -> None:
    result = run_cli(world.wrong_token, "deals", "get", "1")
    assert_one_line_error(result, 12, "Pipedrive refused the API token (401")
    assert world.sandbox.calls[-1].token_valid is False
