"""Looking a key up by its hash, alone or with the prediction a poll reads and its queue standing."""

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from models.db import get_engine, session_scope
from models.keys import create_api_key, find_active_key_loading, issue_api_key, revoke_key_row
from models.queue_eta import read_standing, standing_if_queued
from models.tables import Prediction
from tests.models.conftest import NewPrediction


@pytest.fixture
def statements(database_url: str) -> Iterator[list[str]]:
    """The SQL the process sends while the test runs."""
    sent: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_the_key_and_its_prediction_come_in_one_statement(
    database_url: str, api_key: str, prediction_id: str, statements: list[str]
) -> None:
    with session_scope(database_url) as session:
        key = find_active_key_loading(session, api_key, prediction_id)
        prediction = session.get(Prediction, prediction_id)

    assert key is not None and prediction is not None and prediction.api_key_id == key.id
    assert len(statements) == 1


def test_a_queued_predictions_standing_comes_in_the_same_statement(
    database_url: str, api_key: str, new_prediction: NewPrediction, statements: list[str]
) -> None:
    new_prediction()
    behind_one = new_prediction()
    statements.clear()

    with session_scope(database_url) as session:
        find_active_key_loading(session, api_key, behind_one, with_standing=True)
        prediction = session.get(Prediction, behind_one)
        assert prediction is not None
        standing = standing_if_queued(session, prediction)
        assert len(statements) == 1
        # What the standing's own statement says.
        assert standing is not None
        assert standing == read_standing(session, prediction.model, prediction.created_at, prediction.id)
        assert standing.position >= 1


def test_another_keys_prediction_is_not_loaded(database_url: str, prediction_id: str, statements: list[str]) -> None:
    with session_scope(database_url) as session:
        other = create_api_key(session, name="other")
    statements.clear()

    with session_scope(database_url) as session:
        key = find_active_key_loading(session, other, prediction_id)
        assert key is not None and key.name == "other"
        assert session.get(Prediction, prediction_id) is not None  # read afresh: the join left it out

    assert len(statements) == 2


def test_a_revoked_or_unknown_key_finds_nothing(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        row, doomed = issue_api_key(session, name="doomed")
        revoke_key_row(session, row)

    with session_scope(database_url) as session:
        assert find_active_key_loading(session, doomed, prediction_id) is None
        assert find_active_key_loading(session, "farm_unknown", prediction_id) is None
