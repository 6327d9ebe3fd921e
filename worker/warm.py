"""The process's warm pipeline: loaded once per pool child, before its first job."""

import logging
import time

from models.settings import get_settings
from worker.pipelines import Predictor, load_predictor

log = logging.getLogger("farm.worker")

_predictor: Predictor | None = None


def get_predictor() -> Predictor:
    """The loaded predictor, loading it now if the start-up hook has not."""
    global _predictor
    if _predictor is None:
        settings = get_settings()
        started = time.perf_counter()
        _predictor = load_predictor(settings.model_preset, settings.model_path)
        log.info("loaded %s on %s in %.1f s", _predictor.build, _predictor.gpu_class, time.perf_counter() - started)
    return _predictor
