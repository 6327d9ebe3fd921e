"""infra/k8s: every manifest valid against the Kubernetes schemas (kubernetes-validate, offline, strict) or
KEDA's (tests/infra/keda_schemas.py), and shaped to keep the farm's rules: one GPU per worker pod, secrets
only from Secrets, probes on what serves, the autoscaler's query counting what Postgres says is unfinished."""

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy.engine import make_url

from api.main import app
from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import libpq_url, session_scope
from models.keys import find_active_key
from models.settings import Settings
from tests.infra.keda_schemas import SCHEMAS as KEDA_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "infra" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
# The oldest Kubernetes the manifests promise to work on, and the newest whose schemas are bundled.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
API_IMAGE, WORKER_IMAGE = "sd35-farm-api", "sd35-farm-worker"
NAMESPACE = "sd35-farm"
# The processes of the farm, by Deployment: the command each must run.
COMMANDS = {
    "farm-api": ["uvicorn", "api.main:app"],
    "farm-relay": ["python", "-m", "api.relay"],
    "farm-webhook-dispatcher": ["python", "-m", "api.webhook_dispatcher"],
    "farm-flower": ["celery", "-A", "api.broker", "flower"],
    "farm-worker-sd35-medium": ["celery", "-A", "worker.app", "worker"],
}
WORKER = "farm-worker-sd35-medium"
FARM_SECRET = "farm-secrets"
# Settings that carry credentials: from a Secret only, never a ConfigMap or a literal value.
SECRET_SETTINGS = {"FARM_DATABASE_URL", "FARM_BROKER_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S_DIR.rglob("*.yaml") if path != KUSTOMIZATION)


def all_objects() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in documents(path)]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in all_objects() if obj["kind"] == kind}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod_spec(obj)["containers"]
    return found


def workloads() -> list[dict[str, Any]]:
    return [obj for obj in all_objects() if obj["kind"] in ("Deployment", "Job")]


def image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    loaded = yaml.safe_load(KUSTOMIZATION.read_text())
    assert isinstance(loaded, dict)
    return loaded


# --- schemas --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(K8S_DIR)))
def test_manifest_matches_its_schema(path: Path) -> None:
    for obj in documents(path):
        assert {"apiVersion", "kind", "metadata"} <= set(obj) and obj["metadata"].get("name"), obj
        if obj["kind"] in KEDA_SCHEMAS:
            jsonschema.Draft202012Validator(KEDA_SCHEMAS[obj["kind"]]).validate(obj)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_validators_reject_a_typo() -> None:
    """The checks above can fail: a misspelt field is an error for both kinds of schema."""
    deployment = by_name("Deployment")[WORKER]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    scaled = by_name("ScaledObject")[WORKER]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaled, "spec": {**scaled["spec"], "minReplicas": 0}}, KEDA_SCHEMAS["ScaledObject"])


def test_kustomization_lists_every_manifest_but_the_one_shot_jobs(kustomization: dict[str, Any]) -> None:
    listed = set(kustomization["resources"])
    on_disk = {str(path.relative_to(K8S_DIR)) for path in manifest_files()}
    assert listed == {name for name in on_disk if not name.startswith("jobs/")}
    assert kustomization["namespace"] == NAMESPACE
    for job in by_name("Job").values():
        assert job["metadata"]["namespace"] == NAMESPACE, "jobs are applied on their own, outside kustomize"


def test_images_are_the_farms_two_and_pinned(kustomization: dict[str, Any]) -> None:
    tags = {entry["name"]: entry["newTag"] for entry in kustomization["images"]}
    assert set(tags) == {API_IMAGE, WORKER_IMAGE}
    assert all(tag and tag != "latest" for tag in tags.values()), tags
    for obj in workloads():
        for container in containers(obj):
            image = container["image"]
            assert image_name(image) in tags, f"{obj['metadata']['name']}: unknown image {image}"
            if obj["kind"] == "Job":  # not kustomized: pinned in the file, to the same tag
                assert image == f"{image_name(image)}:{tags[image_name(image)]}", image


# --- the farm's processes -------------------------------------------------------------------------------


def test_every_farm_process_has_a_deployment_running_its_module() -> None:
    deployments = by_name("Deployment")
    assert set(COMMANDS) <= set(deployments)
    for name, command in COMMANDS.items():
        (container,) = containers(deployments[name])
        assert container["command"][: len(command)] == command, name
        module = command[command.index("-m") + 1] if "-m" in command else command[-1].split(":")[0]
        if "." in module:
            assert importlib.util.find_spec(module) is not None, f"{name} runs {module}, which does not exist"


def test_only_workers_hold_gpus_and_each_pod_exactly_one() -> None:
    for obj in workloads():
        for container in containers(obj):
            gpus = {part: container["resources"].get(part, {}).get("nvidia.com/gpu") for part in ("requests", "limits")}
            if obj["metadata"]["name"] == WORKER:
                assert gpus == {"requests": 1, "limits": 1}
            else:
                assert gpus == {"requests": None, "limits": None}, obj["metadata"]["name"]
            if image_name(container["image"]) == WORKER_IMAGE:
                assert obj["metadata"]["name"] in (WORKER, "farm-fill-hf-cache"), "the gateway image stays torch-free"


def test_the_worker_is_one_prefork_child_on_its_models_queue_with_the_real_model() -> None:
    worker = by_name("Deployment")[WORKER]
    assert "replicas" not in worker["spec"], "KEDA owns the replica count; a fixed one would be re-applied"
    (container,) = containers(worker)
    command = container["command"]
    assert command[command.index("--pool") + 1] == "prefork"
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--queues") + 1] == SD35_MEDIUM.queue
    assert command[command.index("--hostname") + 1].endswith("@%h"), "one Celery node name per pod"
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    assert env["FARM_MODEL_PRESET"] == "sd3.5-medium" and env["HF_HUB_OFFLINE"] == "1"
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["hf-cache"]["readOnly"] is True
    hard_limit = Settings(_env_file=None).task_time_limit_seconds  # type: ignore[call-arg]
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > hard_limit, "time to finish the running job"


def test_every_container_sizes_its_resources() -> None:
    for obj in workloads():
        for container in containers(obj):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), obj["metadata"]["name"]
            assert "memory" in resources["limits"], obj["metadata"]["name"]


def test_what_serves_or_runs_long_is_probed() -> None:
    deployments = by_name("Deployment")
    paths = set(app.openapi()["paths"])
    (api,) = containers(deployments["farm-api"])
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in paths
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" and "/healthz" in paths
    (flower,) = containers(deployments["farm-flower"])
    assert flower["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    (worker,) = containers(deployments[WORKER])
    for probe in ("startupProbe", "livenessProbe"):
        check = " ".join(worker[probe]["exec"]["command"])
        assert "inspect ping" in check and "gpu@$HOSTNAME" in check, check


def test_services_reach_their_pods() -> None:
    deployments = by_name("Deployment")
    for name, service in by_name("Service").items():
        target = deployments[name]
        labels = target["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        ports = {port["name"] for container in containers(target) for port in container.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports, name
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"{name}: expose through an Ingress with TLS"


# --- settings and secrets -------------------------------------------------------------------------------


def test_no_secret_is_in_the_repository() -> None:
    assert not by_name("Secret"), "Secrets are created by hand (infra/k8s/README.md), never committed"
    config = by_name("ConfigMap")["farm-config"]["data"]
    assert not SECRET_SETTINGS & set(config)
    for obj in workloads():
        for container in containers(obj):
            literal = {item["name"] for item in container.get("env", []) if "value" in item}
            assert not SECRET_SETTINGS & literal, obj["metadata"]["name"]


def test_config_map_holds_only_real_settings() -> None:
    """A misspelt FARM_ key would be ignored silently by the processes (extra="ignore")."""
    known = {f"FARM_{name.upper()}" for name in Settings.model_fields}
    config = by_name("ConfigMap")["farm-config"]["data"]
    assert set(config) <= known, set(config) - known


def test_farm_processes_read_settings_from_the_config_map_and_the_secret() -> None:
    for obj in workloads():
        if obj["metadata"]["name"] == "farm-fill-hf-cache":
            continue  # it reads no farm setting, only the Hugging Face token
        for container in containers(obj):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": "farm-config"}} in sources, obj["metadata"]["name"]
            assert {"secretRef": {"name": FARM_SECRET}} in sources, obj["metadata"]["name"]


# --- autoscaling ----------------------------------------------------------------------------------------


def postgresql_trigger() -> dict[str, Any]:
    (scaled,) = by_name("ScaledObject").values()
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    return dict(trigger)


def test_workers_scale_to_zero_on_the_models_unfinished_predictions() -> None:
    scaled = by_name("ScaledObject")[WORKER]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] in by_name("Deployment")
    assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"]
    trigger = postgresql_trigger()
    assert trigger["authenticationRef"]["name"] in by_name("TriggerAuthentication")
    metadata = trigger["metadata"]
    assert float(metadata["targetQueryValue"]) > 0 and float(metadata["activationTargetQueryValue"]) == 0
    (auth,) = by_name("TriggerAuthentication").values()
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["connection"]
    assert all(ref["name"] != FARM_SECRET for ref in auth["spec"]["secretTargetRef"]), "KEDA gets a read-only role"


@pytest.fixture
def reader_url(database_url: str) -> Iterator[str]:
    """A libpq URL of a role that may read only predictions.status and .model, as infra/k8s/README.md grants."""
    role = f"farm_keda_test_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT (status, model) ON predictions TO {}").format(sql.Identifier(role)))
    url = make_url(database_url)
    try:
        yield f"postgresql://{role}@{url.host}:{url.port or 5432}/{url.database}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_scalers_query_counts_queued_and_running_predictions(
    database_url: str, api_key: str, reader_url: str
) -> None:
    query = postgresql_trigger()["metadata"]["query"]

    def unfinished() -> int:
        with psycopg.connect(reader_url) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    before = unfinished()
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        ids = [
            lifecycle.create_prediction(
                session,
                lifecycle.NewPrediction(
                    api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=n, max_attempts=1
                ),
            ).id
            for n in range(2)
        ]
    assert unfinished() == before + 2  # both queued

    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=ids[0], worker="k8s-test", lease_seconds=30)
    assert claim is not None
    assert unfinished() == before + 2  # one running still needs its GPU

    with session_scope(database_url) as session:
        assert lifecycle.fail(session, claim, error="test", predict_time=None, logs="")
    assert unfinished() == before + 1
