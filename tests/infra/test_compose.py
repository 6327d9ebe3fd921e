"""The production compose stack (docker-compose.yml, infra/): valid, and shaped to keep the guarantees.

`docker-compose config -q` (Debian's docker-compose 1.29) validates the file, GPU reservations and
`service_completed_successfully` included, without a Docker engine. The remaining tests read the YAML
and the files it points at and check the properties that matter in production.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.catalog import SD35_MEDIUM
from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
REDIS_CONF = ROOT / "infra" / "redis.conf"
API_DOCKERFILE = ROOT / "infra" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "infra" / "worker.Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# What the compose file refuses to start without (`${VAR:?…}`); dummy values, never real secrets.
REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "dummy-postgres-password",
    "MINIO_ROOT_USER": "dummy-minio-user",
    "MINIO_ROOT_PASSWORD": "dummy-minio-password",
    "FLOWER_USER": "dummy-flower-user",
    "FLOWER_PASSWORD": "dummy-flower-password",
    "FARM_METRICS_TOKEN": "dummy-metrics-token",
    "GRAFANA_ADMIN_PASSWORD": "dummy-grafana-password",
}


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not on PATH: install it with `apt-get install -y docker-compose` "
            "(Debian's docker-compose 1.29 validates compose files without a Docker engine)",
            pytrace=False,
        )
    return exe


def compose_config(
    tmp_path: Path, env: dict[str, str], env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config -q` with exactly ``env`` (plus PATH/HOME) and no stray .env file."""
    exe = docker_compose()
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [exe, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever form (mapping or KEY=value list) it is written in."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def dockerfile(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return str(Path(build) / "Dockerfile")
    return str(Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile"))


def redis_directives() -> dict[str, str]:
    directives = {}
    for line in REDIS_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            directives[name.lower()] = value.strip()
    return directives


def run_commands(dockerfile_text: str) -> list[str]:
    """The single shell commands of every RUN instruction (continuations joined, split at && ; |)."""
    joined = re.sub(r"\\\n", " ", dockerfile_text)
    commands = []
    for line in joined.splitlines():
        if line.strip().upper().startswith("RUN "):
            commands += [part.strip() for part in re.split(r"&&|;|\|\|?", line.strip()[4:])]
    return commands


# --- docker-compose validates the file ----------------------------------------------------------


def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = compose_config(tmp_path, REQUIRED_ENV)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"


def test_env_example_is_enough_for_compose(tmp_path: Path) -> None:
    result = compose_config(tmp_path, {}, env_file=ENV_EXAMPLE)
    assert result.returncode == 0, f".env.example misses a variable compose needs:\n{result.stderr}"


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_compose_refuses_to_run_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {key: value for key, value in REQUIRED_ENV.items() if key != missing}
    result = compose_config(tmp_path, env)
    assert result.returncode != 0, f"docker-compose config accepted a missing {missing}"
    assert missing in result.stderr


def test_secrets_are_always_guarded() -> None:
    text = COMPOSE_FILE.read_text()
    for name in REQUIRED_ENV:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, f"{name} is not used in docker-compose.yml"
        assert all(use.startswith(":?") for use in uses), f"every ${{{name}}} needs a :? guard: {uses}"


# --- the GPU worker -------------------------------------------------------------------------------


def test_worker_replicas_each_take_one_gpu(services: dict[str, dict[str, Any]]) -> None:
    """`count: 1` would be "device 0" for every replica (Docker's countToDevices); instead each replica sees
    the host's GPUs and worker.gpu_slot gives it one no other replica holds, under a lock in a shared volume."""
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia" and device.get("count") == "all" and "gpu" in device.get("capabilities", [])
        for device in devices
    ), devices
    launcher, _ = split_gpu_slot_command(worker)
    lock_dir = launcher[launcher.index("--lock-dir") + 1]
    assert launcher[:3] == ["python", "-m", "worker.gpu_slot"]
    # A named volume (shared by the replicas on one host), mounted where the launcher keeps its locks.
    assert f"gpu-slots:{lock_dir}" in worker["volumes"]


def test_worker_pins_the_real_model_offline(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    env = environment(worker)
    # Literal, not `${FARM_MODEL_PRESET:-…}`: production never falls back to the tiny preset.
    assert env["FARM_MODEL_PRESET"] == "sd3.5-medium"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "hf-cache:/root/.cache/huggingface" in worker["volumes"]
    for name, service in services.items():
        assert "tiny" not in environment(service).get("FARM_MODEL_PRESET", ""), name


def split_gpu_slot_command(service: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(launcher, worker command): `python -m worker.gpu_slot … -- celery …` split at the `--`."""
    command = service["command"]
    command = command.split() if isinstance(command, str) else [str(arg) for arg in command]
    assert "--" in command, f"the worker must start through worker.gpu_slot: {command}"
    cut = command.index("--")
    return command[:cut], command[cut + 1 :]


def test_worker_runs_prefork_with_one_child_on_the_model_queue(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    _, command = split_gpu_slot_command(worker)
    assert command[:4] == ["celery", "-A", "worker.app", "worker"]
    assert command[command.index("--pool") + 1] == "prefork"
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--queues") + 1] == SD35_MEDIUM.queue
    assert worker["stop_grace_period"].endswith(("s", "m"))


def test_services_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
    assert "ports" not in services["worker"], "a fixed host port on the worker prevents --scale"


# --- the gateway image stays torch-free -----------------------------------------------------------


def test_only_the_worker_uses_the_worker_image(services: dict[str, dict[str, Any]]) -> None:
    worker_image = services["worker"]["image"]
    assert dockerfile(services["worker"]) == "infra/worker.Dockerfile"
    for name, service in services.items():
        if name == "worker":
            continue
        assert dockerfile(service) != "infra/worker.Dockerfile", name
        assert service.get("image") != worker_image, name
    api_image = services["api"]["image"]
    assert dockerfile(services["api"]) == "infra/api.Dockerfile"
    for name in ("migrate", "relay", "webhooks", "flower"):
        assert services[name]["image"] == api_image, name


def test_api_dockerfile_never_installs_torch() -> None:
    text = API_DOCKERFILE.read_text()
    installs = [cmd for cmd in run_commands(text) if re.match(r"(python -m )?pip3? install", cmd)]
    assert installs, "api.Dockerfile installs nothing"
    for cmd in installs:
        assert not re.search(r"torch|diffusers|transformers|\[worker\]|\[embedded\]", cmd), cmd
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.MULTILINE)


def test_worker_dockerfile_ships_no_gateway_code() -> None:
    copies = [line for line in WORKER_DOCKERFILE.read_text().splitlines() if line.startswith("COPY")]
    assert not [line for line in copies if re.search(r"\bapi/?\b", line)], copies
    assert any("worker/" in line for line in copies) and any("models/" in line for line in copies)


# --- Redis, Postgres, migrations, Flower ----------------------------------------------------------


def test_redis_mounts_its_durable_config(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    mounts = [volume.split(":")[:2] for volume in redis["volumes"]]
    assert ["./infra/redis.conf", "/usr/local/etc/redis/redis.conf"] in mounts
    command = redis["command"]
    command = command if isinstance(command, str) else " ".join(command)
    assert command == "redis-server /usr/local/etc/redis/redis.conf"
    assert "ports" not in redis, "Redis must never be published"

    text = REDIS_CONF.read_text()
    assert "appendonly yes" in text
    assert "maxmemory-policy noeviction" in text
    directives = redis_directives()
    assert directives["appendonly"] == "yes"
    assert directives["appendfsync"] == "everysec"
    assert directives["maxmemory-policy"] == "noeviction"
    assert directives["dir"] == "/data"


def test_api_waits_for_migrations(services: dict[str, dict[str, Any]]) -> None:
    depends = services["api"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["minio-init"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("relay", "webhooks", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_flower_binds_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert flower["ports"], "flower publishes no port"
    for port in flower["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    command = " ".join(flower["command"]) if isinstance(flower["command"], list) else flower["command"]
    assert "--basic-auth=" in command


def test_only_the_gateway_and_presigned_downloads_are_published(services: dict[str, dict[str, Any]]) -> None:
    """Clients reach the API and MinIO's S3 port (presigned output URLs); nothing else, not the console."""
    public = {("api", "8000:8000"), ("minio", "9000:9000")}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert (name, str(port)) in public or str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


# --- .env.example ---------------------------------------------------------------------------------


def test_env_example_documents_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [
        f"FARM_{name.upper()}"
        for name in Settings.model_fields
        if not re.search(rf"^#?\s*FARM_{name.upper()}=", text, re.MULTILINE)
    ]
    assert not missing, f"document these models/settings.py settings in .env.example: {missing}"


def test_env_example_holds_no_real_secrets() -> None:
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    for name in REQUIRED_ENV:
        assert values[name] == "change-me", name
