"""A prediction's webhook deliveries: every event with every attempt, and redelivery of the last one."""

from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import CurrentKey, SessionDep, owned_prediction
from api.openapi_errors import NativeError, answers
from api.presenter import iso
from models.tables import WebhookAttempt, WebhookEvent
from models.webhooks import prediction_events, redeliver_last

router = APIRouter(prefix="/v1/predictions/{prediction_id}/webhooks", tags=["webhooks"])


def event_public(event: WebhookEvent, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    """An event as its delivery log shows it; ``id`` is the ``webhook-id`` header it is sent with."""
    return {
        "id": event.id,
        "event": event.event,
        "url": event.url,
        "status": event.state,
        "created_at": iso(event.created_at),
        "next_attempt_at": iso(event.next_attempt_at) if event.state == "pending" else None,
        "delivered_at": iso(event.delivered_at),
        "attempts": [
            {
                "attempted_at": iso(attempt.attempted_at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "outcome": attempt.outcome,
                "error": attempt.error,
                "response_excerpt": attempt.response_excerpt,
            }
            for attempt in attempts
        ],
    }


@router.get("")
def list_deliveries(prediction_id: str, session: SessionDep, key: CurrentKey) -> dict[str, Any]:
    """The prediction's webhook events, oldest first, each with its attempts (time, status code, latency, error)."""
    owned_prediction(session, key, prediction_id)
    return {"results": [event_public(event, attempts) for event, attempts in prediction_events(session, prediction_id)]}


@router.post(
    "/redeliver",
    status_code=202,
    responses=answers(NativeError, {409: "The prediction was created without a webhook: nothing to redeliver."}),
)
def redeliver(prediction_id: str, session: SessionDep, key: CurrentKey) -> dict[str, Any]:
    """Send the prediction's last event again now, with the same ``webhook-id`` and a fresh retry schedule."""
    owned_prediction(session, key, prediction_id)
    event = redeliver_last(session, prediction_id)
    if event is None:
        raise HTTPException(
            409, f"Prediction {prediction_id!r} has no webhook events to redeliver: it was created without a webhook."
        )
    return event_public(event, [])
