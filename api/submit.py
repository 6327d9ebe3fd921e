"""Accepting a prediction: validate against the model's schema, then record it with its outbox row.

Every front door ends here, so validation and the job store are shared.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.errors import InputError
from models.catalog import ModelSpec
from models.inputs import choose_seed
from models.lifecycle import create_prediction
from models.tables import ApiKey, Prediction


def submit_prediction(
    session: Session,
    *,
    key: ApiKey,
    spec: ModelSpec,
    raw_input: dict[str, Any],
    max_attempts: int,
    cancel_after: timedelta | None = None,
) -> Prediction:
    """Validate ``raw_input`` and record the prediction; nothing is stored when the input is invalid."""
    try:
        inputs = spec.input_cls.model_validate(raw_input)
    except ValidationError as error:
        raise InputError.from_validation(error, prefix=("input",)) from None
    return create_prediction(
        session,
        api_key_id=key.id,
        spec=spec,
        inputs=raw_input,
        seed=choose_seed(getattr(inputs, "seed", None)),
        max_attempts=max_attempts,
        deadline=None if cancel_after is None else datetime.now(UTC) + cancel_after,
    )
