"""The outbox relay publishes committed jobs to the real broker, once each."""

import json
from base64 import b64decode

import redis
from sqlalchemy import select

from api.broker import make_celery
from api.relay import relay_batch
from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import get_sessionmaker, session_scope
from models.keys import find_active_key
from models.tables import OutboxMessage
from tests.services import TEST_REDIS_DB

TASK_SENT_EVENTS = f"/{TEST_REDIS_DB}.celeryev/task.sent"  # kombu's fanout channel for Celery's task-sent events


def test_relay_publishes_each_committed_job_once(database_url: str, broker_url: str, api_key: str) -> None:
    queue = redis.Redis.from_url(broker_url)
    queue.delete(SD35_MEDIUM.queue)
    sessions = get_sessionmaker(database_url)
    celery = make_celery(broker_url)
    relay_batch(sessions, celery)  # drain what other tests left
    queue.delete(SD35_MEDIUM.queue)
    events = queue.pubsub()
    events.subscribe(TASK_SENT_EVENTS)
    assert events.get_message(timeout=5) is not None  # subscribed

    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        ids = [
            lifecycle.create_prediction(
                session,
                lifecycle.NewPrediction(
                    api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=3
                ),
            ).id
            for _ in range(3)
        ]

    assert relay_batch(sessions, celery) == 3
    assert relay_batch(sessions, celery) == 0

    # kombu LPUSHes and workers BRPOP: the list holds the first job last.
    messages = [json.loads(raw) for raw in reversed(queue.lrange(SD35_MEDIUM.queue, 0, -1))]
    assert [message["headers"]["id"] for message in messages] == ids  # in the order they were created
    assert {message["headers"]["task"] for message in messages} == {"farm.render"}
    # Their task-sent events went out with them: Flower shows queued jobs from these.
    sent = [events.get_message(timeout=5) for _ in ids]
    assert [json.loads(b64decode(json.loads(event["data"])["body"]))["uuid"] for event in sent if event] == ids
    with session_scope(database_url) as session:
        unsent = session.scalars(
            select(OutboxMessage).where(OutboxMessage.prediction_id.in_(ids), OutboxMessage.sent_at.is_(None))
        ).all()
    assert unsent == []
