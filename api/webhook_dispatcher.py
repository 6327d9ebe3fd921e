"""The webhook dispatcher: sends the events in Postgres to customers' URLs. Run as
``python -m api.webhook_dispatcher`` (CPU only; as many as you like, they share the table).

Due events are claimed under a lease and sent on a thread pool, so one slow receiver never holds up
the others; every attempt is recorded. A NOTIFY at commit wakes the dispatcher at once; otherwise it
sleeps until the next retry falls due. A dispatcher killed mid-send leaves its events leased: they
fall due again when the lease ends and another attempt goes out with the same ``webhook-id``.
"""

import json
import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy.orm import Session, sessionmaker

from api.reconnecting import run_reconnecting, stop_on_signals
from api.webhook_payloads import webhook_payload
from api.webhook_sender import send
from models.db import get_sessionmaker, libpq_url
from models.keys import signing_secrets
from models.net_guard import NetGuard
from models.settings import Settings, get_settings
from models.storage import Storage, storage_from_settings
from models.tables import Prediction, WebhookAttempt
from models.webhooks import (
    WEBHOOK_CHANNEL,
    Decision,
    DueEvent,
    EventState,
    claim_due_events,
    decide,
    disabled_since,
    finish_attempt,
    is_superseded,
    next_due_at,
)

log = logging.getLogger("farm.webhooks")

# Beyond the receiver timeout: rendering, signing and recording the attempt.
LEASE_MARGIN_S = 2.0
# Floor on the idle wait, so an event another dispatcher is claiming right now is not polled in a spin.
MIN_WAIT_S = 0.01


@dataclass(frozen=True)
class Dispatcher:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    guard: NetGuard

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.webhook_timeout_seconds + LEASE_MARGIN_S)

    def claim(self, limit: int) -> list[DueEvent]:
        with self.sessions() as session, session.begin():
            return claim_due_events(session, limit=limit, lease=self.lease)

    def seconds_until_due(self) -> float:
        with self.sessions() as session:
            due = next_due_at(session)
        if due is None:
            return self.settings.relay_poll_seconds
        waiting = (due - datetime.now(UTC)).total_seconds()
        return min(max(waiting, MIN_WAIT_S), self.settings.relay_poll_seconds)

    def deliver(self, event: DueEvent) -> None:
        """One attempt at a claimed event, and its outcome recorded."""
        with self.sessions() as session, session.begin():
            prediction = session.get(Prediction, event.prediction_id)
            assert prediction is not None  # events reference their prediction
            skip = None
            if disabled_since(session, api_key_id=event.api_key_id, url=event.url) is not None:
                skip = EventState.DISABLED
            elif is_superseded(session, event, prediction):
                skip = EventState.SKIPPED
            if skip is not None:
                finish_attempt(session, event, Decision(skip), None)
                return
            secrets = signing_secrets(session, event.api_key_id)
            payload = webhook_payload(
                prediction, event.format, storage=self.storage, public_url=self.settings.public_url
            )
        body = json.dumps(payload, separators=(",", ":")).encode()
        attempted_at = datetime.now(UTC)
        result = send(
            self.guard,
            event.url,
            message_id=event.id,
            body=body,
            secrets=secrets,
            timeout_s=self.settings.webhook_timeout_seconds,
        )
        decision = decide(
            outcome=result.outcome,
            terminal=event.terminal,
            schedule_step=event.schedule_step,
            schedule=self.settings.retry_schedule,
            now=datetime.now(UTC),
            retry_after=result.retry_after,
        )
        attempt = WebhookAttempt(
            attempted_at=attempted_at,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            outcome=result.outcome,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        with self.sessions() as session, session.begin():
            finish_attempt(session, event, decision, attempt)
        log.info(
            "%s %s of %s: %s (%s) → %s",
            event.event,
            event.id,
            event.prediction_id,
            result.outcome,
            result.status_code or result.error,
            decision.state,
        )

    def deliver_logged(self, event: DueEvent) -> None:
        try:
            self.deliver(event)
        except Exception:  # the lease runs out and the event is sent again; the dispatcher goes on
            log.exception(
                "delivering %s of %s failed; it is retried when its lease ends", event.id, event.prediction_id
            )


def make_dispatcher(settings: Settings) -> Dispatcher:
    return Dispatcher(
        settings=settings,
        sessions=get_sessionmaker(settings.database_url),
        storage=storage_from_settings(settings),
        guard=NetGuard.from_setting(settings.allowed_networks),
    )


def run(settings: Settings) -> None:
    """Dispatch until SIGTERM/SIGINT; sends in flight then finish."""
    stopping = stop_on_signals("webhook dispatcher")
    dispatcher = make_dispatcher(settings)
    slots = settings.webhook_concurrency
    in_flight: set[Future[None]] = set()
    with ThreadPoolExecutor(slots, thread_name_prefix="webhook") as pool:

        def serve() -> None:
            nonlocal in_flight
            with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as listener:
                listener.execute(f"LISTEN {WEBHOOK_CHANNEL}")
                log.info("webhook dispatcher listening on %s, %d deliveries at once", WEBHOOK_CHANNEL, slots)
                while not stopping():
                    in_flight = {future for future in in_flight if not future.done()}
                    free = slots - len(in_flight)
                    if free == 0:
                        wait(in_flight, timeout=settings.relay_poll_seconds, return_when=FIRST_COMPLETED)
                        continue
                    claimed = dispatcher.claim(free)
                    in_flight.update(pool.submit(dispatcher.deliver_logged, event) for event in claimed)
                    if len(claimed) == free:
                        continue  # more may be due
                    # Wakes at the first commit that adds an event, or when the next retry falls due.
                    for _ in listener.notifies(timeout=dispatcher.seconds_until_due(), stop_after=1):
                        pass

        # A Postgres restart costs a pause, not the process: events stay pending in Postgres.
        run_reconnecting("webhook dispatcher", serve, stopping)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(get_settings())


if __name__ == "__main__":
    main()
