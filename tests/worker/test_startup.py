"""A worker that cannot load its model stops loudly instead of taking jobs."""

import os
import subprocess
import sys
from pathlib import Path

from tests.services import REPO_ROOT

STOP_TIMEOUT_S = 120


def test_worker_without_weights_exits_and_says_why(broker_url: str, database_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FARM_BROKER_URL": broker_url,
        "FARM_DATABASE_URL": database_url,
        "FARM_MODEL_PRESET": "sd3.5-medium",
        "FARM_MODEL_PATH": str(tmp_path / "no-weights-here"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    celery = str(Path(sys.executable).parent / "celery")
    argv = [celery, "-A", "worker.app", "worker", "--pool", "prefork", "--concurrency", "1", "--queues", "sd35-medium"]
    argv += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=STOP_TIMEOUT_S)
    log = result.stdout + result.stderr
    assert "cannot load the pipeline, stopping this worker" in log, log[-3000:]
    assert "SD3.5 weights not found" in log
