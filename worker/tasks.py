"""Celery tasks: as thin as views; the work is in ``worker.runner``."""

from functools import lru_cache

from celery.exceptions import Reject

from models.queue import TASK_RENDER
from models.settings import get_settings
from models.storage import Storage, storage_from_settings
from worker.app import app
from worker.hard_time_limit import RenderRequest
from worker.runner import run_prediction
from worker.warm import get_predictor, get_safety_checker


@lru_cache
def get_storage() -> Storage:
    return storage_from_settings(get_settings())


# RenderRequest: the worker's parent fails the prediction when the hard time limit kills the child.
@app.task(name=TASK_RENDER, Request=RenderRequest)
def render(prediction_id: str) -> None:
    """Run one prediction by id (the row is re-read; a duplicate delivery is a no-op)."""
    try:
        predictor, safety_checker = get_predictor(), get_safety_checker()
    except Exception as error:
        # This worker is stopping (see worker.hooks): hand the job back for a worker that can run it.
        raise Reject(f"this worker cannot run jobs: {error}", requeue=True) from error
    run_prediction(
        prediction_id,
        settings=get_settings(),
        predictor=predictor,
        storage=get_storage(),
        safety_checker=safety_checker,
    )
