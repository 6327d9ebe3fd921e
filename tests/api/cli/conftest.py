"""The real ``farm`` executable, run as a subprocess the way a person runs it."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import JOB_TIMEOUT_S, Farm
from tests.services import scratch_database

# Installed by `make install` from [project.scripts]; a missing one fails the tests, it is never skipped.
FARM_COMMAND = Path(sys.executable).parent / "farm"
# Wide enough that rich never truncates a table cell the tests read.
TERMINAL_COLUMNS = "200"


def run_farm(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert FARM_COMMAND.is_file(), f"{FARM_COMMAND} is missing: run make install"
    return subprocess.run(
        [str(FARM_COMMAND), *args],
        env={**env, "COLUMNS": TERMINAL_COLUMNS},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )


def client_env(farm: Farm, key: str | None = None) -> dict[str, str]:
    """What a client's shell has: the farm's URL and a key, none of the farm's own settings."""
    plain = {name: value for name, value in os.environ.items() if not name.startswith("FARM_")}
    return {**plain, "FARM_URL": farm.url, "FARM_API_KEY": key or farm.key}


@pytest.fixture
def empty_database(postgres_server: str) -> Iterator[str]:
    """A new database with no tables, for the operator commands."""
    with scratch_database(postgres_server) as url:
        yield url
