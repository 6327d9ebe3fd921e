"""Task and queue names, and the Celery settings every process shares (plain values: no Celery import).

Why these values: ../shared/reference/reliability.md §1. Gateway, relay, workers and Flower load the
same dict because Redis uses the *shortest* visibility timeout of any app on the broker.
"""

from typing import Any

from models.settings import Settings, get_settings

TASK_RENDER = "farm.render"

# The time limits and the visibility timeout are settings (FARM_TASK_SOFT_TIME_LIMIT_SECONDS,
# FARM_TASK_TIME_LIMIT_SECONDS, FARM_VISIBILITY_TIMEOUT_SECONDS), so tests can shorten them; Settings checks
# soft < hard < visibility timeout, so a long job is never redelivered while it still runs.
# Loading SD3.5 Medium in the pool child takes longer than Celery's 4 s start-up watchdog.
WORKER_PROC_ALIVE_TIMEOUT_S = 300


def worker_arguments(*, queue: str, hostname: str, loglevel: str = "INFO") -> list[str]:
    """The ``celery`` arguments that start one GPU worker on ``queue``: prefork with one child, because the
    child holds the warm pipeline on the GPU (solo would lose time limits and heartbeats)."""
    pool = ["--pool", "prefork", "--concurrency", "1"]
    return ["-A", "worker.app", "worker", *pool, "--queues", queue, "--hostname", hostname, "--loglevel", loglevel]


def celery_config(broker_url: str, settings: Settings | None = None) -> dict[str, Any]:
    """Celery configuration shared by every process that talks to the broker; time limits and visibility
    timeout from ``settings`` (default: this process's FARM_* settings).

    Each app adds ``task_queues`` (kombu objects) for the model queues it publishes to or consumes.
    """
    settings = settings or get_settings()
    transport = {"visibility_timeout": settings.visibility_timeout_seconds}
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout_seconds,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "worker_proc_alive_timeout": WORKER_PROC_ALIVE_TIMEOUT_S,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_create_missing_queues": False,
    }
