"""Eachlabs' prediction API: ``POST /v1/prediction/``, ``GET /v1/prediction/{id}``, ``POST …/{id}/cancel``."""

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from api.compat.eachlabs import ERROR_SHAPES, EachlabsCreate, EachlabsError, prediction_body, render_error
from api.compat.errors import door_route
from api.deps import CurrentKey, IdempotencyKeyHeader, PolledDep, SessionDep, SettingsDep, StorageDep, key_prediction
from api.openapi_errors import SPEND_CAP_REACHED, answers
from api.submit import submit_prediction
from api.webhook_target import accept_webhook
from models.catalog import find_model
from models.lifecycle import request_cancel
from models.status import Status
from models.tables import Prediction
from models.webhooks import WebhookFormat

router = APIRouter(prefix="/v1/prediction", tags=["eachlabs"], route_class=door_route(render_error, ERROR_SHAPES))


def owned(prediction: Prediction | None) -> Prediction:
    """The caller's prediction, found; Eachlabs' 404 when not."""
    if prediction is None:
        raise HTTPException(404, "Prediction not found")
    return prediction


@router.post("/", responses=answers(EachlabsError, {402: SPEND_CAP_REACHED, 404: "No such model."}))
@router.post("", include_in_schema=False)
def create(
    body: EachlabsCreate,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> dict[str, Any]:
    """Create a prediction; poll ``GET /v1/prediction/{predictionID}`` until success or error."""
    spec = find_model(body.model)
    if spec is None:
        raise HTTPException(404, "Model not found")
    webhook = accept_webhook(
        session,
        api_key_id=key.id,
        settings=settings,
        url=body.webhook_url,
        fmt=WebhookFormat.EACHLABS,
        field="webhook_url",
    )
    prediction = submit_prediction(
        session,
        key=key,
        spec=spec,
        raw_input=body.input,
        settings=settings,
        webhook=webhook,
        idempotency_key=idempotency_key,
    )
    return {"status": "success", "message": "Prediction created successfully", "predictionID": prediction.id}


@router.get("/{prediction_id}")
async def get(
    prediction_id: str,  # noqa: ARG001 (declared for the docs; PolledDep reads it from the path)
    polled: PolledDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> dict[str, Any]:
    """The prediction: status starting|processing|success|error|cancelled, output URL, metrics{predict_time, cost}."""
    # Polled: one statement, read with the key, no thread (as GET /v1/predictions/{id}).
    return prediction_body(owned(polled.prediction), storage, settings.public_url)


@router.post("/{prediction_id}/cancel", responses=answers(EachlabsError, {400: "The prediction already finished."}))
def cancel(prediction_id: str, session: SessionDep, key: CurrentKey) -> JSONResponse:
    """Cancel a queued or running prediction."""
    prediction = owned(key_prediction(session, key, prediction_id))
    if Status(prediction.status).is_terminal():
        return JSONResponse(status_code=400, content={"error": "Prediction already finished"})
    request_cancel(session, prediction_id=prediction.id)
    return JSONResponse(content={"status": "cancelled", "message": "Prediction cancellation requested"})
