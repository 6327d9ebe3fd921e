"""infra/prometheus and infra/grafana: valid for their tools, wired into compose, and every metric they use
is one the gateway's /metrics exports (read from a running gateway, not from a list kept by hand).

`promtool` (Debian's `prometheus` package, installed by `make test-tools`) checks the scrape config and the
rules, and runs the alert rules' unit tests (infra/prometheus/alerts_test.yml)."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.farm import Farm
from tests.infra.test_compose import environment

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboard.json"
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Series Prometheus makes itself, not the gateway.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not on PATH: install it with `apt-get install -y prometheus` (`make test-tools`)",
            pytrace=False,
        )
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


@pytest.fixture(scope="module")
def exported(gateway: Farm) -> set[str]:
    """Every series name the gateway's /metrics exposes (also families with no sample yet)."""
    response = httpx.get(f"{gateway.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    names = set()
    for family in text_string_to_metric_families(response.text):
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def metric_names(promql: str) -> set[str]:
    """The series names an expression reads (the farm's and Flower's; Prometheus' own `up`)."""
    return set(re.findall(r"\b((?:farm|flower)_[a-z0-9_]+|up)\b(?!\s*\()", promql))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


# --- the tools accept the files ------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """Each alert fires on the series it is meant for, after its `for`, and not on healthy ones."""
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_passes_promtool_check(tmp_path: Path) -> None:
    """Checked whole (rule files included), with the token file compose's prometheus writes made here."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    token_file = tmp_path / "metrics-token"
    token_file.write_text("dummy-token")
    farm_job = next(job for job in config["scrape_configs"] if job["job_name"] == "farm")
    assert farm_job["authorization"]["credentials_file"] == "/prometheus/metrics-token"
    farm_job["authorization"]["credentials_file"] = str(token_file)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_targets_the_compose_services() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["farm"]["metrics_path"] == "/metrics"
    assert jobs["farm"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert config["rule_files"] == ["alerts.yml"]


# --- what the rules and the dashboard read is what /metrics exports ------------------------------


def test_alerts_cover_missing_workers_queue_wait_and_failures() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {"FarmWorkerMissing", "FarmQueueWaitGrowing", "FarmFailureRatioHigh"} <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("page", "warn"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_metric_the_alerts_use_is_exported(exported: set[str]) -> None:
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']} reads no metric"
        missing = used - PROMETHEUS_OWN - exported
        assert not missing, f"{rule['alert']} reads {sorted(missing)}, which /metrics lacks"


def test_every_metric_the_dashboard_uses_is_exported(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= exported, f"{expr!r} reads {sorted(used - exported)}, which /metrics lacks"
    # And the dashboard shows every farm metric family at least once.
    shown = set().union(*(metric_names(expr) for expr in exprs))
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported}
    assert {family for family in families if not any(n.startswith(family) for n in shown)} == set()


def test_dashboard_reads_the_provisioned_data_source() -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    uid = datasources[0]["uid"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "farm.yml")["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


# --- compose runs them, privately ----------------------------------------------------------------


def test_compose_runs_prometheus_and_grafana_on_loopback_behind_a_profile() -> None:
    services = load_yaml(COMPOSE_FILE)["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    for service in (prometheus, grafana):
        assert service["profiles"] == ["monitoring"]
        assert all(str(port).startswith("127.0.0.1:") for port in service["ports"])
    assert "./infra/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    # The entrypoint writes the token where the scrape config reads it, from the same variable the api gets.
    assert "/prometheus/metrics-token" in " ".join(prometheus["command"])
    assert environment(prometheus)["FARM_METRICS_TOKEN"] == environment(services["api"])["FARM_METRICS_TOKEN"]
    assert "FARM_METRICS_TOKEN" not in environment(services["worker"])  # only the gateway checks it
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./infra/grafana/dashboard.json"] == "/etc/grafana/dashboards/farm.json"
    assert environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    for source in [*mounts, *(volume.split(":")[0] for volume in prometheus["volumes"])]:
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_compose_flower_uses_the_broker_config_with_auth_and_read_only() -> None:
    flower = load_yaml(COMPOSE_FILE)["services"]["flower"]
    command = [str(arg) for arg in flower["command"]]
    # api.broker builds its Celery app from models.queue.celery_config, as the workers' app does.
    assert command[:4] == ["celery", "-A", "api.broker", "flower"]
    auth = next(arg for arg in command if arg.startswith("--basic-auth="))
    assert re.fullmatch(r"--basic-auth=\$\{FLOWER_USER:\?[^}]*\}:\$\{FLOWER_PASSWORD:\?[^}]*\}", auth), auth
    assert "--read_only" in command
