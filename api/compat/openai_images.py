"""OpenAI's Images API (``POST /v1/images/generations``) in terms of the native prediction.

Sizes: a ``WxH`` with both sides 256–1536 and multiples of 16 is rendered as asked; any other
(``1792x1024``, ``4096x4096``, …) is scaled into that range keeping its shape and rounded to
multiples of 16; ``auto`` is 1024x1024.
"""

import base64
import re
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from api.compat.errors import Problem
from api.json_types import INTEGRAL_FLOATS, JsonInt
from api.openapi_errors import ErrorShapes
from api.waiting import MAX_SYNC_WAIT_S, load_prediction, wait_until_terminal
from models.settings import Settings
from models.status import Status
from models.storage import Storage
from models.tables import Prediction

MIN_SIDE, MAX_SIDE, SIDE_STEP = 256, 1536, 16
MAX_IMAGES = 4  # the farm's num_images limit (OpenAI allows up to 10)
AUTO_SIZE = (1024, 1024)
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# Inputs of the farm's model a client may add (``extra_body``); OpenAI has no names for them.
FARM_EXTRAS = ("seed", "negative_prompt", "steps", "cfg")


def map_size(size: str | None) -> tuple[int, int]:
    """The rendered (width, height) for OpenAI's ``size``."""
    if size is None or size == "auto":
        return AUTO_SIZE
    match = SIZE.match(size)
    if match is None or 0 in (width := int(match[1]), height := int(match[2])):
        raise ValueError("use auto or WIDTHxHEIGHT, e.g. 1024x1024")
    scale = 1.0
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
    if min(width, height) * scale < MIN_SIDE:
        scale = MIN_SIDE / min(width, height)

    def side(pixels: int) -> int:
        return min(MAX_SIDE, max(MIN_SIDE, round(pixels * scale / SIDE_STEP) * SIDE_STEP))

    return side(width), side(height)


class ImageGeneration(BaseModel):
    """Body of ``POST /v1/images/generations``; OpenAI's other fields (quality, style, user, …) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)  # "n": "2" or "stream": 0 is refused, not coerced

    prompt: str = Field(description="What the image should show.", examples=["a red fox in snow"])
    model: str | None = Field(default=None, description="Any name; the farm renders SD3.5 Medium.")
    n: JsonInt | None = Field(default=None, description=f"Images to make, 1–{MAX_IMAGES}.")
    size: str | None = Field(
        default=None,
        description="auto or WIDTHxHEIGHT; mapped to the nearest supported size.",
        examples=["1024x1024"],
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None, description="url (default; b64_json for gpt-image models) or b64_json."
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(default=None, description="Encoding; png default.")
    output_compression: Annotated[int, Field(ge=0, le=100), INTEGRAL_FLOATS] | None = Field(
        default=None, description="Quality of jpeg/webp, 0–100."
    )
    stream: bool | None = Field(default=None, description="Streaming is not available: false or absent.")
    # Farm extras, for clients that send them through ``extra_body``.
    seed: JsonInt | None = None
    negative_prompt: str | None = None
    steps: JsonInt | None = None
    cfg: float | None = None

    @field_validator("n")
    @classmethod
    def _n_in_range(cls, n: int | None) -> int | None:
        if n is not None and not 1 <= n <= MAX_IMAGES:
            raise ValueError(f"must be between 1 and {MAX_IMAGES} on this farm")
        return n

    @field_validator("size")
    @classmethod
    def _size_parses(cls, size: str | None) -> str | None:
        map_size(size)
        return size

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, stream: bool | None) -> bool | None:
        if stream:
            raise ValueError("streaming is not available on this farm: send stream false or leave it out")
        return stream

    def farm_input(self) -> dict[str, Any]:
        """The native model's input for this request."""
        width, height = map_size(self.size)
        raw: dict[str, Any] = {
            "prompt": self.prompt,
            "width": width,
            "height": height,
            "num_images": self.n or 1,
            "output_format": self.output_format or "png",
        }
        if self.output_compression is not None:
            raw["output_quality"] = self.output_compression
        raw.update({name: getattr(self, name) for name in FARM_EXTRAS if getattr(self, name) is not None})
        return raw

    def wants_base64(self) -> bool:
        """GPT image models answer base64 only; the dall-e models default to URLs."""
        if self.response_format is not None:
            return self.response_format == "b64_json"
        return (self.model or "").startswith("gpt-image")


def images_response(
    prediction: Prediction, storage: Storage, *, base64_images: bool, size: tuple[int, int]
) -> dict[str, Any]:
    """The body of a finished generation: ``{created, data[{url|b64_json, revised_prompt}], output_format, size}``."""
    keys = prediction.output_keys or []
    if base64_images:
        data = [{"b64_json": base64.b64encode(storage.get(key)).decode(), "revised_prompt": None} for key in keys]
    else:
        data = [{"url": storage.url(key), "revised_prompt": None} for key in keys]
    return {
        "created": int(prediction.created_at.timestamp()),
        "data": data,
        "output_format": prediction.input.get("output_format", "png"),
        "size": f"{size[0]}x{size[1]}",
    }


def error_body(message: str, *, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def unfinished_response(prediction: Prediction, public_url: str, waited_s: float) -> JSONResponse:
    """A generation that failed, was canceled, or is still running after the wait, as OpenAI errors.

    ``x-should-retry: false``: a retried POST would start another generation.
    """
    native = f"{public_url.rstrip('/')}/v1/predictions/{prediction.id}"
    headers = {"x-should-retry": "false", "x-request-id": prediction.id}
    status = Status(prediction.status)
    if status is Status.FAILED:
        body = error_body(f"Image generation failed: {prediction.error}", kind="server_error", code="generation_failed")
        return JSONResponse(status_code=500, content=body, headers=headers)
    if status is Status.CANCELED:
        body = error_body(f"Image generation was canceled ({native}).", kind="server_error", code="canceled")
        return JSONResponse(status_code=500, content=body, headers=headers)
    message = f"The images were not ready within {waited_s:.0f} s; the generation goes on: poll {native}."
    return JSONResponse(status_code=504, content=error_body(message, kind="timeout", code="timeout"), headers=headers)


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


ERROR_SHAPES = ErrorShapes(default=OpenAIError, renamed={422: 400})


def render_error(problem: Problem) -> JSONResponse:
    """OpenAI's error shape: 400 for bad input (the client raises BadRequestError), 401 for keys."""
    if problem.status == 401:
        body = error_body(problem.detail, kind="invalid_request_error", code="invalid_api_key")
    elif problem.status == 422:
        fields = problem.fields(strip="input.")
        body = error_body(
            problem.detail, kind="invalid_request_error", param=fields[0] if fields else None, code="invalid_value"
        )
    else:
        kind = "server_error" if problem.status >= 500 else "invalid_request_error"
        body = error_body(problem.detail, kind=kind)
    status = 400 if problem.status == 422 else problem.status
    return JSONResponse(status_code=status, content=body, headers=problem.headers)


async def finish_generation(
    settings: Settings, storage: Storage, prediction_id: str, request: ImageGeneration
) -> JSONResponse:
    """Wait for the generation, then answer its images or an OpenAI error."""
    await wait_until_terminal(settings, prediction_id, MAX_SYNC_WAIT_S)
    prediction = await load_prediction(settings, prediction_id)
    if prediction.status != Status.SUCCEEDED:
        return unfinished_response(prediction, settings.public_url, MAX_SYNC_WAIT_S)
    content = await run_in_threadpool(
        images_response, prediction, storage, base64_images=request.wants_base64(), size=map_size(request.size)
    )
    return JSONResponse(content=content, headers={"x-request-id": prediction.id})
