"""Test-only failpoints: off unless named, typos refused at start-up, `exit` ends the process at once."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from models.failpoints import FAILPOINT_EXIT_CODE, NO_FAILPOINTS, Failpoints, parse_failpoints
from models.settings import Settings
from tests.services import REPO_ROOT


def test_nothing_is_armed_by_default() -> None:
    assert Settings().failpoints == ""
    assert parse_failpoints("") == {} == NO_FAILPOINTS.actions
    NO_FAILPOINTS.hit("relay.after_publish")  # returns: the process goes on


def test_points_and_actions_parse() -> None:
    assert parse_failpoints(" relay.before_publish=exit, relay.after_publish=exit ") == {
        "relay.before_publish": "exit",
        "relay.after_publish": "exit",
    }


@pytest.mark.parametrize(
    ("setting", "named"), [("relay.after_publsh=exit", "relay.after_publsh"), ("relay.after_publish=crash", "crash")]
)
def test_a_typo_is_refused_when_the_settings_load(setting: str, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(failpoints=setting)


def test_an_armed_exit_ends_the_process_with_its_code() -> None:
    script = (
        "from models.failpoints import Failpoints\n"
        "Failpoints.from_setting('relay.after_publish=exit').hit('relay.after_publish')\n"
        "print('survived')"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == FAILPOINT_EXIT_CODE
    assert "survived" not in result.stdout
    assert "failpoint relay.after_publish: exiting now" in result.stderr


def test_another_armed_point_does_not_fire_here() -> None:
    Failpoints.from_setting("relay.before_publish=exit").hit("relay.after_publish")
