"""What to do with an account's webhooks at Pipedrive (`instant.decide`), table-tested."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from pydantic import SecretStr

from daemon.instant import decide
from daemon.instant.decide import Desired, Plan

INSTALLATION = "0123456789abcdef0123456789abcdef"
URL = "https://hooks.example.com/pipedrive/main"
PASSWORD = SecretStr("pw-1")
DESIRED = Desired(URL, "pipedrive-triggers-u1", PASSWORD)
OURS = decide.webhook_name(INSTALLATION, "main")


@dataclass(frozen=True)
class Listed:
    id: int
    name: str = OURS
    subscription_url: str = URL
    event_action: str = "*"
    event_object: str = "*"
    version: str = "2.0"
    active: bool = True
    http_auth_user: str | None = "pipedrive-triggers-u1"
    http_auth_password: SecretStr | None = PASSWORD


GOOD = Listed(7)


@pytest.mark.parametrize(
    ("listed", "desired", "expected"),
    [
        ([], DESIRED, Plan(create=True)),
        ([GOOD], DESIRED, Plan(keep=7)),
        # The listing may not show passwords: the user still tells ours apart.
        ([replace(GOOD, http_auth_password=None)], DESIRED, Plan(keep=7)),
        ([replace(GOOD, active=False)], DESIRED, Plan(delete=(7,), create=True)),
        ([replace(GOOD, subscription_url=URL + "x")], DESIRED, Plan(delete=(7,), create=True)),
        ([replace(GOOD, http_auth_user="other")], DESIRED, Plan(delete=(7,), create=True)),
        ([replace(GOOD, http_auth_user=None)], DESIRED, Plan(delete=(7,), create=True)),
        (
            [replace(GOOD, http_auth_password=SecretStr("old"))],
            DESIRED,
            Plan(delete=(7,), create=True),
        ),
        ([replace(GOOD, event_object="deal")], DESIRED, Plan(delete=(7,), create=True)),
        ([replace(GOOD, version="1.0")], DESIRED, Plan(delete=(7,), create=True)),
        # A duplicate (a POST that timed out but was made) goes; the first that serves stays.
        ([replace(GOOD, id=9), GOOD], DESIRED, Plan(keep=7, delete=(9,))),
        ([replace(GOOD, id=3, active=False), GOOD], DESIRED, Plan(keep=7, delete=(3,))),
        # Not wanted: every one of ours goes.
        ([GOOD, replace(GOOD, id=9, active=False)], None, Plan(delete=(7, 9))),
        ([], None, Plan()),
    ],
)
def test_plan(listed: list[Listed], desired: Desired | None, expected: Plan) -> None:
    assert decide.plan(list(listed), INSTALLATION, "main", desired) == expected


OTHERS = [
    # Another tool's, at our very URL with our credentials: not ours by its name.
    replace(GOOD, id=1, name="Zapier"),
    # Another installation of this daemon on the same company.
    replace(GOOD, id=2, name=decide.webhook_name("f" * 32, "main")),
    # Ours, for another account of this installation.
    replace(GOOD, id=3, name=decide.webhook_name(INSTALLATION, "eu")),
    # A name that only starts like ours.
    replace(GOOD, id=4, name=OURS + "-copy"),
]


@pytest.mark.parametrize("desired", [DESIRED, None])
def test_never_touches_a_webhook_that_is_not_ours(desired: Desired | None) -> None:
    found = decide.plan(list(OTHERS), INSTALLATION, "main", desired)
    assert found.delete == ()
    assert found.keep is None
    assert found.create is (desired is not None)


def test_ours_is_told_by_installation_and_account() -> None:
    assert decide.is_ours(GOOD, INSTALLATION, "main")
    assert decide.is_ours(OTHERS[2], INSTALLATION)  # any account of this installation
    assert not decide.is_ours(OTHERS[2], INSTALLATION, "main")
    assert not decide.is_ours(OTHERS[0], INSTALLATION)
    assert not decide.is_ours(OTHERS[1], INSTALLATION)


def test_the_name_fits_pipedrive_for_the_longest_account_name() -> None:
    assert len(decide.webhook_name(INSTALLATION, "a" * 200)) <= 255
