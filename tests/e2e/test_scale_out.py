"""Two worker processes on one model queue, running the simulated preset through the real farm: gateway,
relay, Postgres, Redis and Celery, as `docker compose up --scale worker=2` runs them."""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from models.db import session_scope
from models.tables import Prediction
from tests.conftest import isolated_farm
from tests.e2e.test_quick_start import create, download_image
from tests.farm import Farm
from tests.services import TEST_REDIS_DB
from worker.pipelines.simulated import SIMULATED_GPU_CLASS

SIMULATED_SECONDS = 1.5
WORKERS = 2
REDIS_DB = TEST_REDIS_DB + 4  # the session fixtures in tests/conftest.py hold + 0 … + 3
JOB = {"prompt": "a simulated fox", "width": 256, "height": 256, "steps": 10, "output_format": "png"}


@pytest.fixture(scope="module")
def simulated_farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root: Path = tmp_path_factory.mktemp("scale-out")
    settings = {"FARM_MODEL_PRESET": "simulated", "FARM_SIMULATED_SECONDS": str(SIMULATED_SECONDS)}
    with isolated_farm(
        postgres_server, redis_server, REDIS_DB, str(root / "outputs"), root, workers=WORKERS, settings_env=settings
    ) as farm:
        yield farm


def test_a_simulated_prediction_takes_the_whole_path_and_says_it_was_simulated(simulated_farm: Farm) -> None:
    done = simulated_farm.wait(str(create(simulated_farm, JOB)["id"]))

    assert done["status"] == "succeeded", done["error"]
    assert done["gpu_class"] == SIMULATED_GPU_CLASS
    assert done["metrics"]["predict_time"] >= SIMULATED_SECONDS
    assert done["progress"] == {"step": 10, "total": 10, "percent": 100.0}
    assert "10/10" in str(done["logs"])
    image = download_image(done["output"][0])
    assert image.format == "PNG" and image.size == (256, 256)


def test_two_workers_run_two_jobs_at_the_same_time(simulated_farm: Farm) -> None:
    ids = [str(create(simulated_farm, JOB)["id"]) for _ in range(WORKERS)]
    done = [simulated_farm.wait(prediction_id) for prediction_id in ids]

    assert [body["status"] for body in done] == ["succeeded"] * WORKERS
    spans = [
        (datetime.fromisoformat(body["started_at"]), datetime.fromisoformat(body["completed_at"])) for body in done
    ]
    # Each job holds its worker for at least SIMULATED_SECONDS: one worker would run them one after the other.
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    with session_scope(simulated_farm.env["FARM_DATABASE_URL"]) as session:
        workers = set(session.scalars(select(Prediction.worker).where(Prediction.id.in_(ids))))
    assert len(workers) == WORKERS, workers
