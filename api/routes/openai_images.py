"""OpenAI's Images API: ``POST /v1/images/generations``, answered when the images are ready."""

from fastapi import APIRouter, Response

from api.compat.errors import door_route
from api.compat.openai_images import ImageGeneration, finish_generation, render_error
from api.deps import CurrentKey, SessionDep, SettingsDep, StorageDep
from api.submit import submit_prediction
from api.waiting import DeferredResponse
from models.catalog import SD35_MEDIUM

router = APIRouter(prefix="/v1/images", tags=["openai"], route_class=door_route(render_error))


@router.post("/generations")
def generate_images(
    body: ImageGeneration, session: SessionDep, key: CurrentKey, settings: SettingsDep, storage: StorageDep
) -> Response:
    """Generate images with SD3.5 Medium, as OpenAI's endpoint does (synchronous; errors in OpenAI's shape)."""
    prediction = submit_prediction(
        session, key=key, spec=SD35_MEDIUM, raw_input=body.farm_input(), max_attempts=settings.max_attempts
    )
    prediction_id = prediction.id
    return DeferredResponse(lambda: finish_generation(settings, storage, prediction_id, body))
