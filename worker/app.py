"""The worker's Celery app. No torch at import time: CUDA must only start in the pool child.

celery -A worker.app worker --pool prefork --concurrency 1 --queues sd35-medium

Without --queues the worker consumes the queues of the models its preset serves (FARM_MODEL_PRESET); a
--queues naming another model's queue is refused at start-up (task_create_missing_queues is off), so a
worker never takes jobs for a model it has not loaded.
"""

from celery import Celery
from kombu.entity import Queue

from models.queue import celery_config
from models.settings import get_settings
from worker.pipelines import preset_queues

settings = get_settings()
app = Celery("farm", include=["worker.tasks", "worker.hooks"])
app.conf.update(celery_config(settings.broker_url))
app.conf.task_queues = [Queue(name) for name in preset_queues(settings.model_preset)]
