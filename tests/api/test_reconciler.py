"""The reconciler against the real broker: a queued prediction whose message Redis lost is published
again; one whose message is still there is left alone."""

from datetime import timedelta

import redis
from sqlalchemy import select

from api.broker import make_celery
from api.reconciler import live_task_ids, reconcile
from api.relay import relay_batch
from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import get_sessionmaker, session_scope
from models.keys import find_active_key
from models.tables import OutboxMessage

QUEUES = [SD35_MEDIUM.queue]


def published_prediction(database_url: str, broker_url: str, api_key: str) -> str:
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        prediction_id = lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=3
            ),
        ).id
    relay_batch(get_sessionmaker(database_url), make_celery(broker_url))
    return prediction_id


def unsent_messages(database_url: str, prediction_id: str) -> int:
    with session_scope(database_url) as session:
        query = select(OutboxMessage).where(
            OutboxMessage.prediction_id == prediction_id, OutboxMessage.sent_at.is_(None)
        )
        return len(session.scalars(query).all())


def test_a_message_lost_from_redis_is_published_again(database_url: str, broker_url: str, api_key: str) -> None:
    broker = redis.Redis.from_url(broker_url)
    prediction_id = published_prediction(database_url, broker_url, api_key)
    assert prediction_id in live_task_ids(broker, QUEUES)

    with session_scope(database_url) as session:
        assert prediction_id not in reconcile(session, broker, QUEUES, grace=timedelta(0))
    assert unsent_messages(database_url, prediction_id) == 0

    broker.flushdb()  # Redis lost its data
    with session_scope(database_url) as session:
        assert prediction_id in reconcile(session, broker, QUEUES, grace=timedelta(0))
    assert unsent_messages(database_url, prediction_id) == 1
    relay_batch(get_sessionmaker(database_url), make_celery(broker_url))
    assert prediction_id in live_task_ids(broker, QUEUES)


def test_a_recent_publish_is_given_time(database_url: str, broker_url: str, api_key: str) -> None:
    broker = redis.Redis.from_url(broker_url)
    prediction_id = published_prediction(database_url, broker_url, api_key)
    broker.flushdb()

    with session_scope(database_url) as session:
        assert prediction_id not in reconcile(session, broker, QUEUES, grace=timedelta(minutes=5))


def test_a_delivered_unacknowledged_message_counts_as_live(broker_url: str) -> None:
    broker = redis.Redis.from_url(broker_url)
    broker.hset("unacked", "tag-1", '[{"headers": {"id": "p-unacked"}, "body": ""}, "", "sd35-medium"]')
    try:
        assert "p-unacked" in live_task_ids(broker, QUEUES)
    finally:
        broker.hdel("unacked", "tag-1")
