"""What the models tests share: a queued prediction of the session's key."""

import pytest

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import session_scope
from models.keys import find_active_key


@pytest.fixture
def prediction_id(database_url: str, api_key: str) -> str:
    """A new ``starting`` prediction (two attempts, no webhook) with its outbox row."""
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        return lifecycle.create_prediction(
            session, api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=2
        ).id
