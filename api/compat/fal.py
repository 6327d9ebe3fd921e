"""fal's queue API in terms of the native prediction: request ids are prediction ids.

fal's defaults for SD3.5 Medium differ from Replicate's; they are filled in before the shared
validation, so the stored input says what was rendered. ``sync_mode`` is accepted and ignored:
images are always returned as URLs of the farm's storage.
"""

import io
import re
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.compat.errors import Problem
from api.openapi_errors import ErrorShapes
from api.presenter import iso
from api.waiting import MAX_SYNC_WAIT_S, load_prediction, wait_until_terminal
from models.catalog import ModelSpec
from models.inputs import SD35Input
from models.queue_eta import QueueStanding
from models.settings import Settings
from models.status import Status
from models.storage import CONTENT_TYPES, Storage
from models.tables import Prediction

# fal-ai/stable-diffusion-v35-medium's defaults, where they differ from the native ones.
FAL_DEFAULTS: dict[str, Any] = {"guidance_scale": 4.5, "output_format": "jpeg", "image_size": "landscape_4_3"}
SIZE_FIELDS = ("image_size", "aspect_ratio", "width", "height", "image")
# fal-only options with no effect here.
IGNORED = ("sync_mode",)
# Elapsed time in a tqdm progress line: "[00:03<00:10, …]".
ELAPSED = re.compile(r"\[(\d+):(\d{2})<")


def fal_input(arguments: dict[str, Any]) -> dict[str, Any]:
    """The native input for fal's arguments: fal's defaults filled in, fal-only options dropped."""
    raw = {name: value for name, value in arguments.items() if name not in IGNORED}
    if "cfg" not in raw and "guidance_scale" not in raw:
        raw["guidance_scale"] = FAL_DEFAULTS["guidance_scale"]
    if not any(name in raw for name in SIZE_FIELDS):
        raw["image_size"] = FAL_DEFAULTS["image_size"]
    raw.setdefault("output_format", FAL_DEFAULTS["output_format"])
    return raw


def request_urls(public_url: str, app_id: str, request_id: str) -> dict[str, str]:
    """The handle fal's clients keep: the request id and the URLs to poll, fetch and cancel."""
    base = f"{public_url.rstrip('/')}/{app_id}/requests/{request_id}"
    return {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }


def fal_logs(prediction: Prediction) -> list[dict[str, Any]]:
    """The prediction's log lines as fal's log records, timed from the progress lines' elapsed time."""
    start: datetime = prediction.started_at or prediction.created_at
    moment, records = start, []
    for line in prediction.logs.splitlines():
        if (elapsed := ELAPSED.search(line)) is not None:
            moment = start + timedelta(minutes=int(elapsed[1]), seconds=int(elapsed[2]))
        records.append({"message": line, "level": "INFO", "source": "user", "timestamp": iso(moment)})
    return records


def status_body(
    prediction: Prediction, urls: dict[str, str], *, standing: QueueStanding | None, with_logs: bool
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``GET …/status``: IN_QUEUE, IN_PROGRESS or COMPLETED."""
    status = Status(prediction.status)
    logs = fal_logs(prediction) if with_logs else None
    if status is Status.STARTING:
        return 202, {"status": "IN_QUEUE", "queue_position": standing.position if standing else 0, **urls}
    if status is Status.PROCESSING:
        return 202, {"status": "IN_PROGRESS", "logs": logs, **urls}
    body: dict[str, Any] = {"status": "COMPLETED", "logs": logs, "metrics": {"inference_time": prediction.predict_time}}
    if status is Status.FAILED:
        body |= {"error": prediction.error, "error_type": "generation_failed"}
    elif status is Status.CANCELED:
        body |= {"error": prediction.error or "Request was canceled.", "error_type": "canceled"}
    return 200, {**body, **urls}


def image_size(spec: ModelSpec, prediction: Prediction, storage: Storage, key: str) -> tuple[int, int]:
    """(width, height) of one output: the requested size, or the file's own with an init image."""
    if "image" not in prediction.input:
        inputs = spec.input_cls.model_validate(prediction.input)
        if isinstance(inputs, SD35Input):
            return inputs.size()
    with Image.open(io.BytesIO(storage.get(key))) as image:
        return image.size


def result_body(spec: ModelSpec, prediction: Prediction, storage: Storage) -> dict[str, Any]:
    """fal's result of a finished request: images, seed, has_nsfw_concepts, timings, prompt."""
    images = []
    for key in prediction.output_keys or []:
        width, height = image_size(spec, prediction, storage, key)
        content_type = CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
        images.append({"url": storage.url(key), "width": width, "height": height, "content_type": content_type})
    return {
        "images": images,
        "seed": prediction.seed,
        "has_nsfw_concepts": prediction.has_nsfw_concepts,
        "timings": {"inference": prediction.predict_time},
        "prompt": prediction.input.get("prompt"),
    }


def unfinished_result(prediction: Prediction) -> JSONResponse:
    """The result of a request that has no images: still running, failed or canceled."""
    status = Status(prediction.status)
    if status is Status.FAILED:
        return JSONResponse(
            status_code=500,
            content={"detail": prediction.error, "error_type": "generation_failed"},
            headers={"x-fal-request-id": prediction.id},
        )
    if status is Status.CANCELED:
        return JSONResponse(status_code=400, content={"detail": prediction.error or "Request was canceled."})
    return JSONResponse(status_code=400, content={"detail": "Request is still in progress"})


class FalError(BaseModel):
    detail: str


class FalFieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None


class FalValidationError(BaseModel):
    detail: list[FalFieldError]


ERROR_SHAPES = ErrorShapes(default=FalError, by_status={422: FalValidationError})


def render_error(problem: Problem) -> JSONResponse:
    """fal's apps answer like FastAPI: 422 ``{"detail": [{loc, msg, type}]}`` for bad input, else ``{"detail"}``."""
    if problem.status == 422:
        detail = [
            {
                "loc": [
                    "body",
                    *(part for part in str(error["field"]).removeprefix("input.").split(".") if part != "body"),
                ],
                "msg": error["message"],
                "type": "value_error",
                "input": error["value"],
            }
            for error in problem.errors
        ]
        return JSONResponse(status_code=422, content={"detail": detail})
    return JSONResponse(status_code=problem.status, content={"detail": problem.detail}, headers=problem.headers)


async def finish_run(settings: Settings, storage: Storage, spec: ModelSpec, prediction_id: str) -> JSONResponse:
    """fal's synchronous run: wait for the request, then answer its result (or its error)."""
    await wait_until_terminal(settings, prediction_id, MAX_SYNC_WAIT_S)
    prediction = await load_prediction(settings, prediction_id)
    if prediction.status == Status.SUCCEEDED:
        content = await run_in_threadpool(result_body, spec, prediction, storage)
        return JSONResponse(content=content, headers={"x-fal-request-id": prediction.id})
    if not Status(prediction.status).is_terminal():
        detail = f"Request {prediction.id} did not finish within {MAX_SYNC_WAIT_S:.0f} s; it goes on in the queue."
        return JSONResponse(status_code=504, content={"detail": detail}, headers={"x-fal-request-id": prediction.id})
    return unfinished_result(prediction)


def webhook_body(spec: ModelSpec, prediction: Prediction, storage: Storage) -> dict[str, Any]:
    """What fal posts to ``fal_webhook`` when a request ends: status OK with the result as ``payload``, or
    ERROR with the error (fal's ``"Invalid status code: …"`` has no equivalent; the farm's message is sent)."""
    ids = {"request_id": prediction.id, "gateway_request_id": prediction.id}
    if prediction.status == Status.SUCCEEDED:
        return {**ids, "status": "OK", "payload": result_body(spec, prediction, storage), "error": None}
    error = prediction.error or "Request was canceled."
    return {**ids, "status": "ERROR", "payload": {"detail": error}, "error": error}
