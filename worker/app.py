"""The worker's Celery app. No torch at import time: CUDA must only start in the pool child.

celery -A worker.app worker --pool prefork --concurrency 1 --queues sd35-medium
"""

from celery import Celery
from kombu.entity import Queue

from models.catalog import MODELS
from models.queue import celery_config
from models.settings import get_settings

app = Celery("farm", include=["worker.tasks", "worker.hooks"])
app.conf.update(celery_config(get_settings().broker_url))
app.conf.task_queues = [Queue(spec.queue) for spec in MODELS.values()]
