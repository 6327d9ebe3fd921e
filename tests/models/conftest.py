"""What the models tests share: queued predictions of the session's key."""

from collections.abc import Callable
from typing import Any

import pytest

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import session_scope
from models.keys import find_active_key
from models.webhooks import WebhookTarget

MakePrediction = Callable[..., str]


@pytest.fixture
def new_prediction(database_url: str, api_key: str) -> MakePrediction:
    """Queue a new ``starting`` prediction (two attempts) with its outbox row; ``inputs``, ``image_key``
    (image-to-image) and ``webhook`` as given."""

    def create(
        inputs: dict[str, Any] | None = None, image_key: str | None = None, webhook: WebhookTarget | None = None
    ) -> str:
        with session_scope(database_url) as session:
            key = find_active_key(session, api_key)
            assert key is not None
            return lifecycle.create_prediction(
                session,
                lifecycle.NewPrediction(
                    api_key_id=key.id,
                    spec=SD35_MEDIUM,
                    inputs=inputs or {"prompt": "x"},
                    seed=1,
                    max_attempts=2,
                    image_key=image_key,
                    webhook=webhook,
                ),
            ).id

    return create


@pytest.fixture
def prediction_id(new_prediction: MakePrediction) -> str:
    """A queued prediction without a webhook."""
    return new_prediction()
