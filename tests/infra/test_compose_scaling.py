"""Scaling the GPU workers with compose: `--scale worker=N` on one host, docker-compose.worker.yml on others.

Debian's docker-compose 1.29 validates the files without an engine; `up --scale` itself needs one, so what
would break it (fixed names, hostnames or host ports) is checked on the parsed files.
"""

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.test_compose import COMPOSE_FILE, ROOT, docker_compose, environment, split_gpu_slot_command

WORKER_HOST_FILE = ROOT / "docker-compose.worker.yml"
# All a remote GPU host needs: the broker, the database and the store (with the store's credentials).
WORKER_HOST_ENV = {
    "FARM_DATABASE_URL": "postgresql+psycopg://postgres:dummy@10.0.0.5:5432/farm",
    "FARM_BROKER_URL": "redis://farm:dummy@10.0.0.5:6379/0",
    "FARM_STORAGE_URL": "s3://farm-outputs?endpoint_url=http://10.0.0.5:9000&region=us-east-1",
    "AWS_ACCESS_KEY_ID": "dummy-key-id",
    "AWS_SECRET_ACCESS_KEY": "dummy-secret",
}
# The parts of the worker that must not drift between the two files.
SHARED_WORKER_KEYS = ("image", "build", "command", "deploy", "volumes", "stop_grace_period")


def compose_config(compose_file: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [docker_compose(), "--env-file", str(empty), "-f", str(compose_file), "config", "-q"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_services(compose_file: Path) -> dict[str, dict[str, Any]]:
    services = yaml.safe_load(compose_file.read_text())["services"]
    assert isinstance(services, dict)
    return services


@pytest.fixture(scope="module")
def main_worker() -> dict[str, Any]:
    return load_services(COMPOSE_FILE)["worker"]


@pytest.fixture(scope="module")
def host_services() -> dict[str, dict[str, Any]]:
    return load_services(WORKER_HOST_FILE)


def test_worker_host_file_is_valid(tmp_path: Path) -> None:
    result = compose_config(WORKER_HOST_FILE, WORKER_HOST_ENV, tmp_path)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"


@pytest.mark.parametrize("missing", sorted(WORKER_HOST_ENV))
def test_worker_host_file_refuses_to_run_without_a_url(tmp_path: Path, missing: str) -> None:
    env = {name: value for name, value in WORKER_HOST_ENV.items() if name != missing}
    result = compose_config(WORKER_HOST_FILE, env, tmp_path)
    assert result.returncode != 0, f"docker-compose config accepted a missing {missing}"
    assert missing in result.stderr


def test_a_worker_host_runs_workers_only(host_services: dict[str, dict[str, Any]]) -> None:
    """No Postgres, Redis, store or gateway of its own, and no waiting on services that are not there."""
    assert set(host_services) == {"worker"}
    worker = host_services["worker"]
    assert "depends_on" not in worker
    env = environment(worker)
    for name in WORKER_HOST_ENV:
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required (:?): {env[name]}"
    assert env["FARM_MODEL_PRESET"] == "sd3.5-medium"


def test_the_worker_is_the_same_in_both_files(main_worker: dict[str, Any], host_services: dict[str, Any]) -> None:
    for key in SHARED_WORKER_KEYS:
        assert host_services["worker"][key] == main_worker[key], f"worker {key} differs between the compose files"


@pytest.mark.parametrize("compose_file", [COMPOSE_FILE, WORKER_HOST_FILE], ids=lambda path: path.name)
def test_worker_replicas_can_coexist(compose_file: Path) -> None:
    """What breaks `--scale worker=N`: one container name, one host port, or one Celery node name for all."""
    worker = load_services(compose_file)["worker"]
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker, f"{compose_file.name}: worker {key} prevents --scale"
    _, command = split_gpu_slot_command(worker)
    node_name = command[command.index("--hostname") + 1]
    assert node_name.endswith("@%h"), f"each replica needs its own Celery node name (%h = container id): {node_name}"
    assert worker["deploy"].get("replicas", 1) == 1, "scale with --scale, not a fixed replica count"
