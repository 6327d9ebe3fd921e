"""A bare Celery app with a no-op task: the floor the farm's own overhead is compared against.

Same broker settings as the farm (models.queue.celery_config), plus a Redis result backend so the
client can time the round trip.
"""

import os

from celery import Celery

from models.queue import celery_config

BROKER_URL = os.environ["BENCH_BROKER_URL"]
QUEUE = "bench-noop"

app = Celery("bench-noop")
app.conf.update(celery_config(BROKER_URL))
app.conf.update(
    result_backend=BROKER_URL, task_ignore_result=False, task_default_queue=QUEUE, task_create_missing_queues=True
)


@app.task(name="bench.noop")
def noop() -> None:
    """Nothing: the round trip is all broker, worker and result backend."""
