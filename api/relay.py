"""The outbox relay: publishes committed jobs to the broker. It also keeps the queue honest: cancels
predictions past their ``Cancel-After`` deadline, reaps expired leases (a worker that died mid-job),
and republishes jobs whose message Redis lost (``api.reconciler``). Run as ``python -m api.relay``.

A job reaches Redis only after its row is committed. Publishing happens inside the transaction
that marks the outbox row sent: if that commit is lost the row is published again, and the
duplicate delivery fails its claim harmlessly (at-least-once publish, exactly-once effect).
"""

import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from celery import Celery
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.broker import make_celery
from api.reconciler import reconcile
from api.reconnecting import run_reconnecting, stop_on_signals
from models.catalog import MODELS
from models.db import get_engine, libpq_url
from models.failpoints import NO_FAILPOINTS, Failpoints
from models.lifecycle import OUTBOX_CHANNEL, expire_deadlines, reap_expired_leases
from models.settings import Settings, get_settings
from models.tables import OutboxMessage

log = logging.getLogger("farm.relay")

BATCH_SIZE = 100

_unsent = (
    select(OutboxMessage.id)
    .where(OutboxMessage.sent_at.is_(None))
    .order_by(OutboxMessage.id)
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
MARK_BATCH_SENT = (
    update(OutboxMessage)
    .where(OutboxMessage.id.in_(_unsent))
    .values(sent_at=bindparam("sent_at"))
    .returning(OutboxMessage.id, OutboxMessage.prediction_id, OutboxMessage.task_name, OutboxMessage.queue)
)


def relay_batch(sessions: sessionmaker[Session], celery: Celery, failpoints: Failpoints = NO_FAILPOINTS) -> int:
    """Publish up to BATCH_SIZE unsent messages; return how many were sent. ``failpoints``: tests only."""
    with sessions() as session, session.begin():
        # One round trip takes the batch and marks it sent; the mark commits only after the publish below.
        # SKIP LOCKED lets several relays share the outbox without publishing a row twice at once.
        # On the session's connection: the ORM's bulk-update path (synchronising the identity map) costs more than
        # the statement, and this session holds no objects.
        values = {"batch_size": BATCH_SIZE, "sent_at": datetime.now(UTC)}
        marked = session.connection().execute(MARK_BATCH_SENT, values).all()
        messages = sorted(marked, key=lambda message: message.id)  # RETURNING has no order; the queue is FIFO
        if messages:
            failpoints.hit("relay.before_publish")
            # One Redis pipeline for the batch (kombu's publish batch): each job's LPUSH and its task-sent event go
            # out together when the block ends, not a round trip (and a new redis-py client) for each command.
            with celery.producer_or_acquire() as producer, producer.batch():
                for message in messages:
                    celery.send_task(
                        message.task_name,
                        args=[message.prediction_id],
                        task_id=message.prediction_id,
                        queue=message.queue,
                        producer=producer,
                    )
            failpoints.hit("relay.after_publish")
    return len(messages)


def sweep(sessions: sessionmaker[Session]) -> None:
    """Deadlines and expired leases: one transaction each poll interval."""
    with sessions() as session, session.begin():
        if expired := expire_deadlines(session):
            log.info("canceled %d queued prediction(s) past their Cancel-After deadline", expired)
        requeued, ended = reap_expired_leases(session)
        if requeued or ended:
            log.warning("expired leases: requeued %s, ended %s", requeued, ended)


def reconcile_once(sessions: sessionmaker[Session], broker: redis.Redis, grace: timedelta) -> None:
    with sessions() as session, session.begin():
        if republished := reconcile(session, broker, [spec.queue for spec in MODELS.values()], grace=grace):
            log.warning(
                "republished %d prediction(s) whose message was not in Redis: %s", len(republished), republished
            )


def run(settings: Settings) -> None:
    """Relay until SIGTERM/SIGINT: sweep, then sleep until a NOTIFY or the poll interval."""
    stopping = stop_on_signals("relay")
    engine = get_engine(settings.database_url)
    celery = make_celery(settings.broker_url)
    broker = redis.Redis.from_url(settings.broker_url)
    failpoints = Failpoints.from_setting(settings.failpoints)

    def serve() -> None:
        # One connection for the loop's life, not a pooled checkout (and its ping) per batch: a job's path from
        # the gateway's commit to Redis is one round trip shorter. A lost connection ends serve(); it starts again.
        with (
            psycopg.connect(libpq_url(settings.database_url), autocommit=True) as listener,
            engine.connect() as connection,
        ):
            sessions = sessionmaker(connection, expire_on_commit=False)
            listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
            log.info("relay listening on %s", OUTBOX_CHANNEL)
            last_sweep = last_reconcile = time.monotonic()
            while not stopping():
                sent = relay_batch(sessions, celery, failpoints)
                if sent:
                    log.info("published %d job(s)", sent)
                # Deadlines are at least 5 s away and leases last far longer: one sweep per poll interval.
                if time.monotonic() - last_sweep >= settings.relay_poll_seconds:
                    last_sweep = time.monotonic()
                    sweep(sessions)
                if time.monotonic() - last_reconcile >= settings.reconcile_seconds:
                    last_reconcile = time.monotonic()
                    reconcile_once(sessions, broker, timedelta(seconds=settings.reconcile_seconds))
                if sent < BATCH_SIZE:
                    # Wakes at the first commit that queued a job; the timeout covers missed notifications.
                    for _ in listener.notifies(timeout=settings.relay_poll_seconds, stop_after=1):
                        pass

    # A Postgres or Redis restart costs a pause, not the process: unsent rows stay in the outbox.
    run_reconnecting("relay", serve, stopping)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(get_settings())


if __name__ == "__main__":
    main()
