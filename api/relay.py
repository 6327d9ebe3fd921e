"""The outbox relay: publishes committed jobs to the broker, and cancels predictions past their
``Cancel-After`` deadline. Run as ``python -m api.relay``.

A job reaches Redis only after its row is committed. Publishing happens inside the transaction
that marks the outbox row sent: if that commit is lost the row is published again, and the
duplicate delivery fails its claim harmlessly (at-least-once publish, exactly-once effect).
"""

import logging
import signal
import time
from datetime import UTC, datetime
from types import FrameType

import psycopg
from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.broker import make_celery
from models.db import get_sessionmaker, libpq_url
from models.lifecycle import OUTBOX_CHANNEL, expire_deadlines
from models.settings import Settings, get_settings
from models.tables import OutboxMessage

log = logging.getLogger("farm.relay")

BATCH_SIZE = 100


def relay_batch(sessions: sessionmaker[Session], celery: Celery) -> int:
    """Publish up to BATCH_SIZE unsent messages; return how many were sent."""
    with sessions() as session, session.begin():
        # SKIP LOCKED lets several relays share the outbox without publishing a row twice at once.
        messages = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(BATCH_SIZE)
            .with_for_update(skip_locked=True)
        ).all()
        for message in messages:
            celery.send_task(
                message.task_name,
                args=[message.prediction_id],
                task_id=message.prediction_id,
                queue=message.queue,
            )
        if messages:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([m.id for m in messages]))
                .values(sent_at=datetime.now(UTC))
            )
    return len(messages)


def run(settings: Settings) -> None:
    """Relay until SIGTERM/SIGINT: sweep, then sleep until a NOTIFY or the poll interval."""
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        log.info("relay stopping on signal %s", signum)
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sessions = get_sessionmaker(settings.database_url)
    celery = make_celery(settings.broker_url)
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        log.info("relay listening on %s", OUTBOX_CHANNEL)
        last_sweep = 0.0
        while not stopping:
            sent = relay_batch(sessions, celery)
            if sent:
                log.info("published %d job(s)", sent)
            # Deadlines are at least 5 s away: one sweep per poll interval, not one per published job.
            if time.monotonic() - last_sweep >= settings.relay_poll_seconds:
                last_sweep = time.monotonic()
                with sessions() as session, session.begin():
                    if expired := expire_deadlines(session):
                        log.info("canceled %d queued prediction(s) past their Cancel-After deadline", expired)
            if sent < BATCH_SIZE:
                # Wakes at the first commit that queued a job; the timeout covers missed notifications.
                for _ in listener.notifies(timeout=settings.relay_poll_seconds, stop_after=1):
                    pass


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(get_settings())


if __name__ == "__main__":
    main()
