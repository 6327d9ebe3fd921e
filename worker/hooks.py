"""Celery signal hooks of the worker."""

from typing import Any

from celery.signals import worker_process_init

from worker.warm import get_predictor


@worker_process_init.connect
def load_pipeline(**_: Any) -> None:
    """Load the pipeline in each pool child before it takes a job (worker_proc_alive_timeout is raised
    for this; the parent never touches torch, so CUDA starts after the fork)."""
    get_predictor()
