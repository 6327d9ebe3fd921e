"""The reconciler: predictions still ``starting`` whose message is nowhere in Redis get a new one.

Redis can lose messages (a restart without AOF, a flush, a failover). Postgres knows every job
that should be queued; Redis shows which messages are live: waiting in a model's queue list, or
delivered to a worker and not yet acknowledged (kombu's ``unacked`` hash). A prediction published
longer ago than the grace period with neither is published again. A false positive (a message
in flight between the two) only makes a duplicate, whose claim fails harmlessly.
"""

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import cast

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.lifecycle import republish
from models.status import Status
from models.tables import OutboxMessage, Prediction

# kombu's Redis transport: delivered-but-unacknowledged messages, by delivery tag.
UNACKED_HASH = "unacked"
SCAN_CHUNK = 1000


def task_id(message: str | bytes) -> str | None:
    """The Celery task id (= prediction id) of a message as kombu stores it."""
    try:
        payload = json.loads(message)
    except ValueError:
        return None
    if isinstance(payload, list):  # unacked entries are [message, exchange, routing_key]
        payload = payload[0] if payload else {}
    headers = payload.get("headers", {}) if isinstance(payload, dict) else {}
    found = headers.get("id")
    return str(found) if found else None


def live_task_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Ids of the messages waiting in ``queues`` or delivered and unacknowledged."""
    messages: list[bytes | str] = []
    for queue in queues:
        # redis-py types its sync client's answers as "value or awaitable"; this client is sync.
        length = cast(int, client.llen(queue))
        for start in range(0, length, SCAN_CHUNK):
            messages.extend(cast(list[bytes], client.lrange(queue, start, start + SCAN_CHUNK - 1)))
    messages.extend(cast(list[bytes], client.hvals(UNACKED_HASH)))
    return {found for message in messages if (found := task_id(message)) is not None}


def orphaned(session: Session, live: set[str], *, grace: timedelta) -> list[str]:
    """``starting`` predictions last published more than ``grace`` ago whose message is not live."""
    last_sent = (
        select(OutboxMessage.prediction_id, func.max(OutboxMessage.sent_at).label("sent_at"))
        .group_by(OutboxMessage.prediction_id)
        .having(func.count() == func.count(OutboxMessage.sent_at))  # an unsent message is the relay's job
        .subquery()
    )
    waiting = session.scalars(
        select(Prediction.id)
        .join(last_sent, last_sent.c.prediction_id == Prediction.id)
        .where(Prediction.status == Status.STARTING, last_sent.c.sent_at < datetime.now(UTC) - grace)
    )
    return [prediction_id for prediction_id in waiting if prediction_id not in live]


def reconcile(session: Session, client: redis.Redis, queues: Iterable[str], *, grace: timedelta) -> list[str]:
    """Republish the orphans; returns their ids."""
    return republish(session, orphaned(session, live_task_ids(client, queues), grace=grace))
