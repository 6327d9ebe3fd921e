"""OpenAI's Images API: ``POST /v1/images/generations``, answered when the images are ready."""

from fastapi import APIRouter, Response

from api.compat.errors import door_route
from api.compat.openai_images import ERROR_SHAPES, ImageGeneration, OpenAIError, finish_generation, render_error
from api.deps import CurrentKey, IdempotencyKeyHeader, SessionDep, SettingsDep, StorageDep
from api.openapi_errors import SPEND_CAP_REACHED, answers
from api.submit import submit_prediction
from api.waiting import DeferredResponse
from models.catalog import SD35_MEDIUM

router = APIRouter(prefix="/v1/images", tags=["openai"], route_class=door_route(render_error, ERROR_SHAPES))


@router.post(
    "/generations",
    responses=answers(
        OpenAIError,
        {
            402: SPEND_CAP_REACHED,
            500: "The generation failed or was canceled (x-should-retry: false).",
            504: "The images were not ready in time; the generation goes on (poll the URL in the message).",
        },
    ),
)
def generate_images(
    body: ImageGeneration,
    session: SessionDep,
    key: CurrentKey,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Generate images with SD3.5 Medium, as OpenAI's endpoint does (synchronous; errors in OpenAI's shape)."""
    prediction = submit_prediction(
        session,
        key=key,
        spec=SD35_MEDIUM,
        raw_input=body.farm_input(),
        settings=settings,
        idempotency_key=idempotency_key,
    )
    prediction_id = prediction.id
    return DeferredResponse(lambda: finish_generation(settings, storage, prediction_id, body))
