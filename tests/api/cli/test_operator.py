"""``farm up`` and ``farm worker`` start the farm's real processes; ``--help`` on every command."""

import socket
import subprocess
import threading

import pytest

from tests.api.cli.conftest import FARM_COMMAND, run_farm
from tests.farm import START_TIMEOUT_S, Farm, stop

COMMANDS = [
    [],
    ["predict"],
    ["get"],
    ["cancel"],
    ["usage"],
    ["up"],
    ["worker"],
    ["migrate"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
]
# Celery's worker logs this once its pool child has loaded the pipeline and it consumes.
WORKER_READY = "ready."


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "farm")
def test_every_command_has_help(command: list[str]) -> None:
    result = run_farm(*command, "--help", env={})

    assert result.returncode == 0, result.stderr
    assert f"Usage: farm {' '.join(command)}".rstrip() in result.stdout


def test_up_runs_the_make_up_launcher(farm: Farm) -> None:
    # The launcher's first check fails fast when the gateway's port is taken, before it starts anything.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_farm("up", env={**farm.env, "FARM_PORT": str(port)})

    assert result.returncode == 1
    assert f"make up failed: port {port} for the gateway (FARM_PORT) is in use" in result.stdout


def test_worker_starts_a_celery_worker_on_the_model_queue(gateway: Farm) -> None:
    # The gateway fixture has no relay, so nothing reaches this worker's queue: it only starts and stops.
    process = subprocess.Popen(
        [str(FARM_COMMAND), "worker", "--hostname", "cli-test@%h"],
        env=gateway.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if WORKER_READY in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(timeout=START_TIMEOUT_S * 2), "".join(lines)
    finally:
        stop(process)  # SIGTERM: a warm shutdown
        reader.join(timeout=10)
    output = "".join(lines)
    assert "cli-test@" in output and ".> sd35-medium" in output
    assert "concurrency: 1 (prefork)" in output
