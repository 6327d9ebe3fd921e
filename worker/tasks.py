"""Celery tasks: as thin as views; the work is in ``worker.runner``."""

from functools import lru_cache

from models.queue import TASK_RENDER
from models.settings import get_settings
from models.storage import Storage, storage_from_url
from worker.app import app
from worker.runner import run_prediction
from worker.warm import get_predictor


@lru_cache
def get_storage() -> Storage:
    settings = get_settings()
    return storage_from_url(settings.storage_url, settings.public_url)


@app.task(name=TASK_RENDER)
def render(prediction_id: str) -> None:
    """Run one prediction by id (the row is re-read; a duplicate delivery is a no-op)."""
    run_prediction(prediction_id, settings=get_settings(), predictor=get_predictor(), storage=get_storage())
