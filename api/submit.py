"""Accepting a prediction: validate against the model's schema, then record it with its outbox row.

Every front door ends here, so validation and the job store are shared.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.admission import admission_statements, refuse_over_caps
from api.errors import InputError
from api.idempotency import fingerprint, remember, replay
from api.init_image import attach_init_image, shortened
from models.catalog import ModelSpec
from models.ids import new_prediction_id
from models.inputs import choose_seed
from models.lifecycle import NewPrediction
from models.psycopg_direct import run_pipelined
from models.queue_eta import remember_standing, standing_of, standing_statement
from models.settings import Settings
from models.storage import Storage, storage_from_settings
from models.tables import ApiKey, Prediction
from models.webhooks import WebhookTarget


def submit_prediction(
    session: Session,
    *,
    key: ApiKey,
    spec: ModelSpec,
    raw_input: dict[str, Any],
    settings: Settings,
    cancel_after: timedelta | None = None,
    storage: Storage | None = None,
    webhook: WebhookTarget | None = None,
    idempotency_key: str | None = None,
    with_standing: bool = False,
) -> Prediction:
    """Validate ``raw_input`` and record the prediction, committed; nothing is stored when the input is invalid.

    With an ``idempotency_key`` seen before (same request) the first prediction is returned instead.
    An init image (``image``) is fetched, checked and stored here, before the row; the key's caps are
    checked last, with its row locked until the commit. ``storage`` defaults to the process's own.
    ``with_standing``: its queue standing is read too, for ``queue_standing``.
    """
    if idempotency_key is not None:
        request_hash = fingerprint(
            {"model": spec.ref, "input": raw_input, "webhook": webhook, "cancel_after": cancel_after}
        )
        ttl = timedelta(hours=settings.idempotency_hours)
        first = replay(session, api_key_id=key.id, key=idempotency_key, request_hash=request_hash, ttl=ttl)
        if first is not None:
            return first
    try:
        inputs = spec.input_cls.model_validate(raw_input)
    except ValidationError as error:
        invalid = InputError.from_validation(error, prefix=("input",))
        raise InputError(shortened(invalid.errors)) from None
    prediction_id = new_prediction_id()
    stored_input, image_key = raw_input, None
    source = getattr(inputs, "image", None)
    if source is not None:
        image = attach_init_image(
            session,
            key=key,
            prediction_id=prediction_id,
            source=source,
            settings=settings,
            storage=storage or storage_from_settings(settings),
        )
        stored_input, image_key = {**raw_input, "image": image.input_value}, image.storage_key
    new = NewPrediction(
        api_key_id=key.id,
        spec=spec,
        inputs=stored_input,
        seed=choose_seed(getattr(inputs, "seed", None)),
        max_attempts=settings.max_attempts,
        deadline=None if cancel_after is None else datetime.now(UTC) + cancel_after,
        id=prediction_id,
        image_key=image_key,
        webhook=webhook,
    )
    # One round trip. The standing first, before the key's row is locked (the key's other creates wait for that
    # lock): in a deep queue its count is the slowest statement of a create. Jobs that other creates commit
    # meanwhile may be missed; polls tell. The inserts go before the caps are judged: a refusal rolls them back.
    statements = {"standing": standing_statement(spec.ref, datetime.now(UTC), new.id)} if with_standing else {}
    rows = run_pipelined(session, statements | admission_statements(key) | new.statements())
    if with_standing:
        remember_standing(session, new.id, standing_of(*rows["standing"]))
    refuse_over_caps(key, settings, rows)
    prediction = new.written(rows)
    if idempotency_key is not None:
        remember(
            session, api_key_id=key.id, key=idempotency_key, request_hash=request_hash, prediction_id=prediction.id
        )
    # Now, not when the route returns: until then the key's row stays locked (admission), and the key's other
    # creates would wait for this response to be built and for two thread hops.
    session.commit()
    return prediction
