"""Accepting a prediction: validate against the model's schema, then record it with its outbox row.

Every front door ends here, so validation and the job store are shared.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import get_storage
from api.errors import InputError
from api.init_image import attach_init_image, shortened
from models.catalog import ModelSpec
from models.ids import new_prediction_id
from models.inputs import choose_seed
from models.lifecycle import create_prediction
from models.settings import Settings, get_settings
from models.storage import Storage
from models.tables import ApiKey, Prediction


def submit_prediction(
    session: Session,
    *,
    key: ApiKey,
    spec: ModelSpec,
    raw_input: dict[str, Any],
    max_attempts: int,
    cancel_after: timedelta | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> Prediction:
    """Validate ``raw_input`` and record the prediction; nothing is stored when the input is invalid.

    An init image (``image``) is fetched, checked and stored here, before the row; ``settings`` and
    ``storage`` default to the process's own.
    """
    try:
        inputs = spec.input_cls.model_validate(raw_input)
    except ValidationError as error:
        invalid = InputError.from_validation(error, prefix=("input",))
        raise InputError(shortened(invalid.errors)) from None
    prediction_id = new_prediction_id()
    stored_input, image_key = raw_input, None
    source = getattr(inputs, "image", None)
    if source is not None:
        settings = settings or get_settings()
        image = attach_init_image(
            session,
            key=key,
            prediction_id=prediction_id,
            source=source,
            settings=settings,
            storage=storage or get_storage(settings),
        )
        stored_input, image_key = {**raw_input, "image": image.input_value}, image.storage_key
    return create_prediction(
        session,
        api_key_id=key.id,
        spec=spec,
        inputs=stored_input,
        seed=choose_seed(getattr(inputs, "seed", None)),
        max_attempts=max_attempts,
        deadline=None if cancel_after is None else datetime.now(UTC) + cancel_after,
        prediction_id=prediction_id,
        image_key=image_key,
    )
