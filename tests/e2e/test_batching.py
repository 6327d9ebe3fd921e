"""Batching through the real farm (gateway, relay, Postgres, Redis, one Celery worker on the simulated preset):
jobs queued while the worker is busy run together in its next pipeline call."""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from models.db import session_scope
from models.tables import Prediction
from tests.conftest import isolated_farm
from tests.e2e.test_quick_start import create
from tests.farm import Farm
from tests.services import TEST_REDIS_DB

SIMULATED_SECONDS = 1.5
BATCH_MAX_IMAGES = 3
# conftest holds + 0 … + 3, test_scale_out + 4, test_webhooks − 1, test_metrics − 2, test_fuzz − 3.
REDIS_DB = TEST_REDIS_DB - 4
JOB = {"prompt": "a simulated fox", "width": 256, "height": 256, "steps": 10, "output_format": "png"}


@pytest.fixture(scope="module")
def batching_farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root: Path = tmp_path_factory.mktemp("batching")
    settings = {
        "FARM_MODEL_PRESET": "simulated",
        "FARM_SIMULATED_SECONDS": str(SIMULATED_SECONDS),
        "FARM_BATCH_MAX_IMAGES": str(BATCH_MAX_IMAGES),
    }
    with isolated_farm(
        postgres_server, redis_server, REDIS_DB, str(root / "outputs"), root, settings_env=settings
    ) as farm:
        yield farm


def test_jobs_queued_behind_a_running_one_share_the_next_pipeline_call(batching_farm: Farm) -> None:
    running = str(create(batching_farm, JOB)["id"])
    batching_farm.wait(running, ("processing",))
    queued = [str(create(batching_farm, {**JOB, "prompt": f"fox {n}"})["id"]) for n in range(BATCH_MAX_IMAGES)]

    done = [batching_farm.wait(prediction_id) for prediction_id in [running, *queued]]

    assert [body["status"] for body in done] == ["succeeded"] * (1 + BATCH_MAX_IMAGES), done
    spans = [
        (datetime.fromisoformat(body["started_at"]), datetime.fromisoformat(body["completed_at"])) for body in done
    ]
    # One worker, yet the queued jobs ran at the same time: in one call, after the running job ended.
    assert max(start for start, _ in spans[1:]) < min(end for _, end in spans[1:]), spans
    assert spans[0][1] <= min(start for start, _ in spans[1:]), spans
    assert all("10/10" in str(body["logs"]) for body in done)
    with session_scope(batching_farm.env["FARM_DATABASE_URL"]) as session:
        workers = set(session.scalars(select(Prediction.worker).where(Prediction.id.in_(queued))))
    assert len(workers) == 1, workers
