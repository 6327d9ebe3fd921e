"""Eachlabs' prediction API: ``POST /v1/prediction/``, ``GET /v1/prediction/{id}``, ``POST …/{id}/cancel``."""

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.compat.eachlabs import EachlabsCreate, prediction_body, render_error
from api.compat.errors import door_route
from api.deps import CurrentKey, SessionDep, SettingsDep, StorageDep
from api.errors import InputError
from api.submit import submit_prediction
from models.catalog import find_model
from models.lifecycle import request_cancel
from models.status import Status
from models.tables import ApiKey, Prediction

router = APIRouter(prefix="/v1/prediction", tags=["eachlabs"], route_class=door_route(render_error))


def eachlabs_prediction(session: Session, key: ApiKey, prediction_id: str) -> Prediction:
    """The caller's prediction; another key's ids are answered like unknown ones."""
    prediction = session.get(Prediction, prediction_id)
    if prediction is None or prediction.api_key_id != key.id:
        raise HTTPException(404, "Prediction not found")
    return prediction


@router.post("/")
@router.post("", include_in_schema=False)
def create(body: EachlabsCreate, session: SessionDep, key: CurrentKey, settings: SettingsDep) -> dict[str, Any]:
    """Create a prediction; poll ``GET /v1/prediction/{predictionID}`` until success or error."""
    spec = find_model(body.model)
    if spec is None:
        raise HTTPException(404, "Model not found")
    if body.webhook_url:
        raise InputError.field("webhook_url", "webhooks are not available on this farm yet: poll instead", None)
    prediction = submit_prediction(
        session, key=key, spec=spec, raw_input=body.input, max_attempts=settings.max_attempts
    )
    return {"status": "success", "message": "Prediction created successfully", "predictionID": prediction.id}


@router.get("/{prediction_id}")
def get(
    prediction_id: str, session: SessionDep, key: CurrentKey, settings: SettingsDep, storage: StorageDep
) -> dict[str, Any]:
    """The prediction: status starting|processing|success|error|cancelled, output URL, metrics{predict_time, cost}."""
    return prediction_body(eachlabs_prediction(session, key, prediction_id), storage, settings.public_url)


@router.post("/{prediction_id}/cancel")
def cancel(prediction_id: str, session: SessionDep, key: CurrentKey) -> JSONResponse:
    """Cancel a queued or running prediction."""
    prediction = eachlabs_prediction(session, key, prediction_id)
    if Status(prediction.status).is_terminal():
        return JSONResponse(status_code=400, content={"error": "Prediction already finished"})
    request_cancel(session, prediction_id=prediction.id)
    return JSONResponse(content={"status": "cancelled", "message": "Prediction cancellation requested"})
