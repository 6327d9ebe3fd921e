"""fal's queue (``/{owner}/{app}`` and ``…/requests/{id}[/status|/cancel]``) and sync run (``/run/{owner}/{app}``).

Point ``FAL_QUEUE_RUN_HOST`` at the farm and ``FAL_RUN_HOST`` at the farm's ``/run``. Owners
``v1`` and ``files`` never match, so these routes cannot shadow the native surface.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from api.compat.errors import door_route
from api.compat.fal import (
    ERROR_SHAPES,
    FalError,
    fal_input,
    finish_run,
    render_error,
    request_urls,
    result_body,
    status_body,
    unfinished_result,
)
from api.deps import (
    CurrentKey,
    IdempotencyKeyHeader,
    PolledWithStanding,
    SessionDep,
    SettingsDep,
    StorageDep,
    key_prediction,
)
from api.openapi_errors import SPEND_CAP_REACHED, answers
from api.submit import submit_prediction
from api.waiting import DeferredResponse
from api.webhook_target import accept_webhook
from models.catalog import ModelSpec, find_model
from models.lifecycle import request_cancel
from models.queue_eta import queue_standing
from models.status import Status
from models.tables import Prediction
from models.webhooks import WebhookFormat


class FalOwner(Convertor[str]):
    """An app owner: any path segment but the native surface's first ones."""

    regex = r"(?!(?:v1|files)(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fal_owner", FalOwner())

router = APIRouter(tags=["fal"], route_class=door_route(render_error, ERROR_SHAPES))
STILL_RUNNING_OR_CANCELED = "The request is still in progress, or was canceled."
REQUEST_FAILED = "The request failed (error_type generation_failed)."
APP = "/{owner:fal_owner}/{app}"
REQUEST = APP + "/requests/{request_id}"
Arguments = Annotated[
    dict[str, Any],
    Body(
        description="The app's input, e.g. {prompt, image_size, …}.",
        examples=[{"prompt": "a red fox in snow", "image_size": "landscape_16_9", "seed": 7}],
    ),
]


def fal_app(owner: str, app: str) -> ModelSpec:
    spec = find_model(f"{owner}/{app}")
    if spec is None:
        raise HTTPException(
            404, f"Application '{owner}/{app}' not found: this farm serves fal-ai/stable-diffusion-v35-medium."
        )
    return spec


def of_app(prediction: Prediction | None, spec: ModelSpec, request_id: str) -> Prediction:
    """The caller's request, found and of this app; fal's 404 when not."""
    if prediction is None or prediction.model != spec.ref:
        raise HTTPException(404, f"Request {request_id!r} not found.")
    return prediction


@router.post(APP, responses=answers(FalError, {402: SPEND_CAP_REACHED}))
def submit(
    owner: str,
    app: str,
    arguments: Arguments,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    fal_webhook: Annotated[str | None, Query(description="URL to POST the result to when the request ends.")] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Queue a request; poll its status_url, then fetch its response_url (or get it at ``fal_webhook``)."""
    spec = fal_app(owner, app)
    webhook = accept_webhook(
        session, api_key_id=key.id, settings=settings, url=fal_webhook, fmt=WebhookFormat.FAL, field="fal_webhook"
    )
    prediction = submit_prediction(
        session,
        key=key,
        spec=spec,
        raw_input=fal_input(arguments),
        settings=settings,
        webhook=webhook,
        idempotency_key=idempotency_key,
        with_standing=True,
    )
    position = queue_standing(session, prediction).position
    urls = request_urls(settings.public_url, f"{owner}/{app}", prediction.id)
    return JSONResponse(content={**urls, "status": "IN_QUEUE", "queue_position": position})


@router.get(REQUEST + "/status")
async def request_status(
    owner: str, app: str, request_id: str, polled: PolledWithStanding, settings: SettingsDep, logs: bool = False
) -> JSONResponse:
    """IN_QUEUE with queue_position, IN_PROGRESS, or COMPLETED with metrics; ``logs=1`` adds log records."""
    # fal's client polls this every 0.1 s: one statement, read with the key, no thread (as GET /v1/predictions/{id}).
    prediction = of_app(polled.prediction, fal_app(owner, app), request_id)
    urls = request_urls(settings.public_url, f"{owner}/{app}", prediction.id)
    status_code, content = status_body(prediction, urls, standing=polled.standing, with_logs=logs)
    return JSONResponse(status_code=status_code, content=content)


@router.get(REQUEST, responses=answers(FalError, {400: STILL_RUNNING_OR_CANCELED, 500: REQUEST_FAILED}))
def request_result(
    owner: str, app: str, request_id: str, session: SessionDep, key: CurrentKey, storage: StorageDep
) -> JSONResponse:
    """The finished request's result: images, seed, has_nsfw_concepts, timings, prompt."""
    spec = fal_app(owner, app)
    prediction = of_app(key_prediction(session, key, request_id), spec, request_id)
    if prediction.status != Status.SUCCEEDED:
        return unfinished_result(prediction)
    return JSONResponse(content=result_body(spec, prediction, storage))


@router.put(REQUEST + "/cancel", responses=answers(FalError, {400: "ALREADY_COMPLETED: the request already ended."}))
def cancel_request(owner: str, app: str, request_id: str, session: SessionDep, key: CurrentKey) -> JSONResponse:
    """202 CANCELLATION_REQUESTED while queued or running; 400 ALREADY_COMPLETED once finished."""
    prediction = of_app(key_prediction(session, key, request_id), fal_app(owner, app), request_id)
    if Status(prediction.status).is_terminal():
        return JSONResponse(
            status_code=400, content={"status": "ALREADY_COMPLETED", "detail": "Request already completed."}
        )
    request_cancel(session, prediction_id=prediction.id)
    return JSONResponse(status_code=202, content={"status": "CANCELLATION_REQUESTED"})


@router.post(
    "/run/{owner}/{app}",
    responses=answers(
        FalError,
        {
            400: "The request was canceled.",
            402: SPEND_CAP_REACHED,
            500: REQUEST_FAILED,
            504: "The request did not finish in time; it goes on in the queue.",
        },
    ),
)
def run(
    owner: str,
    app: str,
    arguments: Arguments,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """fal's synchronous run (``FAL_RUN_HOST``): answer the result once the request finished."""
    spec = fal_app(owner, app)
    prediction = submit_prediction(
        session,
        key=key,
        spec=spec,
        raw_input=fal_input(arguments),
        settings=settings,
        idempotency_key=idempotency_key,
    )
    prediction_id = prediction.id
    return DeferredResponse(lambda: finish_run(settings, storage, spec, prediction_id))
