"""The process's warm pipeline and safety checker: loaded once per pool child, before its first job."""

import logging
import time
from typing import TYPE_CHECKING

from models.settings import get_settings
from worker.pipelines import Predictor, load_predictor
from worker.pipelines.simulated import SimulatedFaults

if TYPE_CHECKING:  # worker.safety imports torch, which only the pool child may load
    from worker.safety import SafetyChecker

log = logging.getLogger("farm.worker")

_predictor: Predictor | None = None
_safety_checker: "SafetyChecker | None" = None


def get_predictor() -> Predictor:
    """The loaded predictor, loading it now if the start-up hook has not."""
    global _predictor
    if _predictor is None:
        settings = get_settings()
        started = time.perf_counter()
        faults = SimulatedFaults(settings.simulated_crash_marker, settings.simulated_ignore_soft_limit_marker)
        _predictor = load_predictor(
            settings.model_preset,
            settings.model_path,
            simulated_seconds=settings.simulated_seconds,
            simulated_faults=faults,
        )
        log.info("loaded %s on %s in %.1f s", _predictor.build, _predictor.gpu_class, time.perf_counter() - started)
    return _predictor


def get_safety_checker() -> "SafetyChecker | None":
    """The loaded safety checker, loading it now if the start-up hook has not; None when FARM_SAFETY_CHECKER_PATH
    is empty. A configured checker that cannot be loaded raises every time, so no job runs unchecked."""
    global _safety_checker
    path = get_settings().safety_checker_path
    if not path:
        return None
    if _safety_checker is None:
        from worker.safety import load_safety_checker

        started = time.perf_counter()
        _safety_checker = load_safety_checker(path)
        log.info("loaded safety checker from %s in %.1f s", path, time.perf_counter() - started)
    return _safety_checker
