"""Task and queue names, and the Celery settings every process shares (plain values: no Celery import).

Why these values: ../shared/reference/reliability.md §1. Gateway, relay, workers and Flower load the
same dict because Redis uses the *shortest* visibility timeout of any app on the broker.
"""

from typing import Any

TASK_RENDER = "farm.render"

# Hard limit < visibility timeout, so a long job is never redelivered while it still runs.
TASK_SOFT_TIME_LIMIT_S = 600
TASK_TIME_LIMIT_S = 660
VISIBILITY_TIMEOUT_S = 3600
# Loading SD3.5 Medium in the pool child takes longer than Celery's 4 s start-up watchdog.
WORKER_PROC_ALIVE_TIMEOUT_S = 300


def celery_config(broker_url: str) -> dict[str, Any]:
    """Celery configuration shared by every process that talks to the broker.

    Each app adds ``task_queues`` (kombu objects) for the model queues it publishes to or consumes.
    """
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
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
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_S,
        "task_time_limit": TASK_TIME_LIMIT_S,
        "worker_proc_alive_timeout": WORKER_PROC_ALIVE_TIMEOUT_S,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_create_missing_queues": False,
    }
