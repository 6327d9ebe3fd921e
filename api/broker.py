"""The gateway side's Celery client: publishes by task name (never imports worker code).

Flower runs against this app too (`celery -A api.broker flower`), so it shares the broker settings.
"""

from celery import Celery
from kombu.entity import Queue

from models.catalog import MODELS
from models.queue import celery_config
from models.settings import get_settings


def make_celery(broker_url: str) -> Celery:
    """A publishing-only Celery app with the farm's shared settings and one queue per model."""
    celery = Celery("farm")
    celery.conf.update(celery_config(broker_url))
    celery.conf.task_queues = [Queue(spec.queue) for spec in MODELS.values()]
    return celery


app = make_celery(get_settings().broker_url)
