"""Celery signal hooks of the worker."""

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from celery.signals import worker_process_init

from worker.warm import get_predictor, get_safety_checker

log = logging.getLogger("farm.worker")


def load_or_stop_worker(what: str, load: Callable[[], object]) -> None:
    """Load in the pool child; if it cannot be loaded, stop the whole worker loudly (a worker without its
    model must not take jobs: compose pins the real preset and fails rather than serve something else)."""
    try:
        load()
    except Exception as error:
        log.critical("cannot load the %s, stopping this worker: %s", what, error)
        os.kill(os.getppid(), signal.SIGTERM)
        raise


@worker_process_init.connect
def load_pipeline(**_: Any) -> None:
    """Load the pipeline in each pool child before it takes a job (worker_proc_alive_timeout is raised
    for this; the parent never touches torch, so CUDA starts after the fork)."""
    load_or_stop_worker("pipeline", get_predictor)


@worker_process_init.connect
def load_safety_checker(**_: Any) -> None:
    """Load the safety checker next to the pipeline when FARM_SAFETY_CHECKER_PATH is set."""
    load_or_stop_worker("safety checker", get_safety_checker)
