"""Predictions: create, get, list, cancel (Replicate's routes and shapes)."""

import base64
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from api.cancel_after import parse_cancel_after
from api.deps import (
    CurrentKey,
    IdempotencyKeyHeader,
    PolledWithStanding,
    SessionDep,
    SettingsDep,
    StorageDep,
    found,
    owned_prediction,
)
from api.errors import InputError
from api.openapi_errors import SPEND_CAP_REACHED, NativeError, answers
from api.presenter import prediction_public
from api.submit import submit_prediction
from api.waiting import DeferredResponse, parse_prefer_wait, prefer_wait_response
from api.webhook_target import accept_webhook, webhook_events
from models.catalog import ModelSpec, find_model
from models.lifecycle import request_cancel
from models.queue_eta import queue_standing
from models.tables import ApiKey, Prediction

router = APIRouter(prefix="/v1", tags=["predictions"])

MAX_PAGE_SIZE = 100
PREFER_WAIT_TIMED_OUT = "With Prefer: wait, the prediction had not ended by then: poll urls.get."


class ModelPredictionCreate(BaseModel):
    """Body of ``POST /v1/models/{owner}/{name}/predictions``."""

    # Clients add fields of their own (the replicate client sends "stream"); ignore them. Strict: a field of the
    # wrong JSON type is refused, not coerced (the model's `input` takes numbers as strings on its own).
    model_config = ConfigDict(extra="ignore", strict=True)

    input: dict[str, Any] = Field(
        description="The model's inputs; see GET /v1/models/{owner}/{name}.",
        examples=[{"prompt": "a red fox in snow", "aspect_ratio": "16:9", "seed": 7}],
    )
    webhook: str | None = Field(
        default=None,
        description="HTTPS URL to POST the prediction to as it changes; signed (Standard Webhooks, see "
        "GET /v1/webhooks/default/secret) and retried for about a day when it ends.",
        examples=["https://example.com/hooks/farm"],
    )
    webhook_events_filter: list[str] | None = Field(
        default=None,
        description="Which events to send: start, output, logs (at most one per 500 ms), completed. Default: all.",
        examples=[["completed"]],
    )
    webhook_completed: str | None = Field(
        default=None, description="Legacy: a URL for the completed event only; prefer webhook + filter."
    )


class PredictionCreate(ModelPredictionCreate):
    """Body of ``POST /v1/predictions``: name the model by ``version`` or ``model``."""

    version: str | None = Field(
        default=None,
        description="owner/name, owner/name:version, or a version id.",
        examples=["stability-ai/stable-diffusion-3.5-medium"],
    )
    model: str | None = Field(default=None, description="owner/name of the model.")


CancelAfterHeader = Annotated[
    str | None,
    Header(description="Cancel the prediction after this long, queued or running: 30s, 5m, 1h30m45s."),
]
PreferHeader = Annotated[
    str | None,
    Header(description="wait or wait=N (1-60): answer when the prediction ends or after N seconds (default 60)."),
]


def _create(
    body: ModelPredictionCreate,
    spec: ModelSpec,
    session: SessionDep,
    key: ApiKey,
    settings: SettingsDep,
    storage: StorageDep,
    cancel_after: str | None,
    prefer: str | None,
    idempotency_key: str | None,
) -> Response:
    wait_s = parse_prefer_wait(prefer)
    if body.webhook:
        events = webhook_events(body.webhook_events_filter, field="webhook_events_filter")
        webhook = accept_webhook(session, api_key_id=key.id, settings=settings, url=body.webhook, events=events)
    else:
        url, field = body.webhook_completed, "webhook_completed"
        webhook = accept_webhook(session, api_key_id=key.id, settings=settings, url=url, field=field)
    prediction = submit_prediction(
        session,
        key=key,
        spec=spec,
        raw_input=body.input,
        settings=settings,
        cancel_after=None if cancel_after is None else parse_cancel_after(cancel_after),
        webhook=webhook,
        idempotency_key=idempotency_key,
        with_standing=wait_s is None,
    )
    if wait_s is not None:
        prediction_id = prediction.id
        return DeferredResponse(lambda: prefer_wait_response(settings, storage, prediction_id, wait_s))
    content = prediction_public(
        prediction,
        storage=storage,
        public_url=settings.public_url,
        standing=queue_standing(session, prediction),
    )
    return JSONResponse(status_code=201, content=content, headers={"Location": content["urls"]["get"]})


@router.post(
    "/predictions",
    status_code=201,
    responses={
        202: {"description": PREFER_WAIT_TIMED_OUT},
        **answers(NativeError, {402: SPEND_CAP_REACHED, 404: "No model has this version or model name."}),
    },
)
def create_prediction(
    body: PredictionCreate,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    storage: StorageDep,
    cancel_after: CancelAfterHeader = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a prediction for the model named by ``version`` or ``model``."""
    ref = body.version or body.model
    if ref is None:
        raise InputError.field("version", "name the model: set version (owner/name or a version id) or model", None)
    spec = find_model(ref)
    if spec is None:
        raise HTTPException(404, f"Unknown model {ref!r} in 'version'/'model': see GET /v1/models.")
    return _create(body, spec, session, key, settings, storage, cancel_after, prefer, idempotency_key)


@router.post(
    "/models/{owner}/{name}/predictions",
    status_code=201,
    responses={202: {"description": PREFER_WAIT_TIMED_OUT}, **answers(NativeError, {402: SPEND_CAP_REACHED})},
)
def create_model_prediction(
    owner: str,
    name: str,
    body: ModelPredictionCreate,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    storage: StorageDep,
    cancel_after: CancelAfterHeader = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a prediction for the named model."""
    spec = find_model(f"{owner}/{name}")
    if spec is None:
        raise HTTPException(404, f"Unknown model '{owner}/{name}': see GET /v1/models.")
    return _create(body, spec, session, key, settings, storage, cancel_after, prefer, idempotency_key)


@router.get("/predictions/{prediction_id}")
async def get_prediction(
    prediction_id: str, polled: PolledWithStanding, settings: SettingsDep, storage: StorageDep
) -> dict[str, Any]:
    """The prediction's current state; while queued, its place in the queue and estimated wait."""
    # Clients poll this every 0.1-0.5 s: one statement, read with the key (``PolledWithStanding``), no thread.
    prediction = found(polled.prediction, prediction_id)
    return prediction_public(prediction, storage=storage, public_url=settings.public_url, standing=polled.standing)


@router.post("/predictions/{prediction_id}/cancel")
def cancel_prediction(
    prediction_id: str, session: SessionDep, key: CurrentKey, settings: SettingsDep, storage: StorageDep
) -> dict[str, Any]:
    """Cancel: a queued prediction never starts; a running one stops at its next step."""
    owned_prediction(session, key, prediction_id)
    request_cancel(session, prediction_id=prediction_id)
    session.expire_all()
    prediction = owned_prediction(session, key, prediction_id)
    return prediction_public(prediction, storage=storage, public_url=settings.public_url)


def encode_cursor(prediction: Prediction, *, backwards: bool = False) -> str:
    """A page boundary: the pages after it hold older predictions, or newer ones when ``backwards``."""
    boundary = [prediction.created_at.isoformat(), prediction.id, *(["previous"] if backwards else [])]
    return base64.urlsafe_b64encode(json.dumps(boundary).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, bool]:
    """(created_at, id, backwards) of a cursor this API issued."""
    try:
        created_at, prediction_id, *direction = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if direction not in ([], ["previous"]):
            raise ValueError(direction)
        return datetime.fromisoformat(created_at), str(prediction_id), bool(direction)
    except (ValueError, TypeError) as error:
        raise InputError.field(
            "cursor", "not a cursor this API issued: follow the 'next' or 'previous' URL of a page", cursor
        ) from error


def list_page(session: Session, key_id: int, cursor: str | None, page_size: int) -> tuple[list[Prediction], bool, bool]:
    """One page of the key's predictions, newest first, and whether older and newer ones exist."""
    query = select(Prediction).where(Prediction.api_key_id == key_id)
    if cursor is None:
        backwards = False
    else:
        created_at, prediction_id, backwards = decode_cursor(cursor)
        position = tuple_(Prediction.created_at, Prediction.id)
        query = query.where(
            position > (created_at, prediction_id) if backwards else position < (created_at, prediction_id)
        )
    order = (Prediction.created_at, Prediction.id)
    query = query.order_by(*(column.asc() if backwards else column.desc() for column in order))
    rows = list(session.scalars(query.limit(page_size + 1)))
    page, more = rows[:page_size], len(rows) > page_size
    if backwards:
        # Fetched oldest first; the cursor's own prediction is older than all of them.
        return page[::-1], bool(page), more
    # The cursor's own prediction (if any) is newer than all of them.
    return page, more, cursor is not None and bool(page)


@router.get("/predictions")
def list_predictions(
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    storage: StorageDep,
    cursor: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE,
) -> dict[str, Any]:
    """The caller's predictions, newest first, ``page_size`` at a time; follow ``next`` and ``previous``."""
    page, older, newer = list_page(session, key.id, cursor, page_size)

    def url(boundary: Prediction, *, backwards: bool) -> str:
        query_string = urlencode({"cursor": encode_cursor(boundary, backwards=backwards), "page_size": page_size})
        return f"{settings.public_url.rstrip('/')}/v1/predictions?{query_string}"

    return {
        "next": url(page[-1], backwards=False) if older else None,
        "previous": url(page[0], backwards=True) if newer else None,
        "results": [prediction_public(p, storage=storage, public_url=settings.public_url) for p in page],
    }
