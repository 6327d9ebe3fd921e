"""Eachlabs' prediction API in terms of the native prediction.

Statuses: starting, processing, success, error (failed; the published sample polls for it),
cancelled. ``output`` is the image URL (a list when ``num_images`` > 1). ``metrics.cost`` is the
price charged for the prediction.
"""

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.compat.errors import Problem
from api.openapi_errors import ErrorShapes
from models.status import Status
from models.storage import Storage
from models.tables import Prediction

STATUSES = {
    Status.STARTING: "starting",
    Status.PROCESSING: "processing",
    Status.SUCCEEDED: "success",
    Status.FAILED: "error",
    Status.CANCELED: "cancelled",
}


class EachlabsCreate(BaseModel):
    """Body of ``POST /v1/prediction/``."""

    model_config = ConfigDict(extra="ignore", strict=True)  # `input` takes numbers as strings on its own

    model: str = Field(
        description="Model slug, e.g. stable-diffusion-3.5-medium.", examples=["stable-diffusion-3.5-medium"]
    )
    version: str | None = Field(default=None, description="Ignored, as Eachlabs ignores it.")
    input: dict[str, Any] = Field(
        description="The model's inputs; numbers may be strings.",
        examples=[{"prompt": "a red fox in snow", "aspect_ratio": "16:9", "steps": "28"}],
    )
    webhook_url: str | None = Field(
        default=None, description="URL to POST the prediction (as GET returns it) to when it ends."
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Ignored: webhooks are signed with the key's secret (Standard Webhooks, "
        "GET /v1/webhooks/default/secret).",
    )


def prediction_body(prediction: Prediction, storage: Storage, public_url: str) -> dict[str, Any]:
    """``GET /v1/prediction/{id}``: id, input, status, output, error, logs, metrics{predict_time, cost}, urls."""
    urls = [storage.url(key) for key in prediction.output_keys or []] if prediction.status == Status.SUCCEEDED else []
    base = f"{public_url.rstrip('/')}/v1/prediction/{prediction.id}"
    return {
        "id": prediction.id,
        "input": prediction.input,
        "status": STATUSES[Status(prediction.status)],
        "output": (urls[0] if len(urls) == 1 else urls) if urls else None,
        "error": prediction.error,
        "logs": prediction.logs or None,
        "metrics": {"predict_time": prediction.predict_time, "cost": prediction.price_usd},
        "urls": {"get": base, "cancel": f"{base}/cancel"},
    }


class EachlabsError(BaseModel):
    error: str = Field(description="What went wrong, in Eachlabs' words.")
    detail: str | None = Field(default=None, description="With bad input or keys: the field and the fix.")


ERROR_SHAPES = ErrorShapes(default=EachlabsError, renamed={422: 400})


def render_error(problem: Problem) -> JSONResponse:
    """Eachlabs' shape ``{"error": "…"}``: 400 for bad input (with a ``detail`` naming the field), 401 for keys."""
    if problem.status == 422:
        on_input = any(field.startswith("input.") for field in problem.fields())
        error = "Invalid input for model" if on_input else "Invalid request body"
        if "model" in problem.fields():
            error = "model field is required"
        return JSONResponse(status_code=400, content={"error": error, "detail": problem.detail})
    if problem.status == 401:
        return JSONResponse(status_code=401, content={"error": "Invalid or missing API key", "detail": problem.detail})
    return JSONResponse(status_code=problem.status, content={"error": problem.detail}, headers=problem.headers)
