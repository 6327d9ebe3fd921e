"""A poll's one read: the caller's key, their prediction of the polled id and its queue standing."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from models.db import get_read_engine, run_raw_read, session_scope
from models.keys import create_api_key, find_active_key, hash_key, issue_api_key, revoke_key_row
from models.poll_read import ACTIVE_KEY_ITS_PREDICTION_AND_STANDING, Polled, read_polled
from models.psycopg_direct import PsycopgStatement
from models.queue_eta import read_standing
from models.tables import ApiKey, Prediction
from tests.models.conftest import MakePrediction
from tests.services import alembic, scratch_database


def poll(database_url: str, key: str, prediction_id: str, *, with_standing: bool = False) -> Polled | None:
    async def read() -> Polled | None:
        engine = get_read_engine(database_url)
        try:
            return await run_raw_read(
                engine, lambda connection: read_polled(connection, key, prediction_id, with_standing=with_standing)
            )
        finally:
            await engine.dispose()  # its connections belong to this call's event loop

    return asyncio.run(read())


def column_values(session: Session, row: ApiKey | Prediction) -> dict[str, object]:
    """``row``'s attributes as loaded by the ORM."""
    loaded = session.get(type(row), row.id)
    assert loaded is not None
    return {attribute.key: getattr(loaded, attribute.key) for attribute in type(row).__mapper__.column_attrs}


def test_the_key_and_its_prediction_hold_what_the_orm_loads(
    database_url: str, api_key: str, prediction_id: str
) -> None:
    poll(database_url, api_key, prediction_id)  # records the key's use, so that the next one writes nothing
    polled = poll(database_url, api_key, prediction_id)

    assert polled is not None and polled.prediction is not None
    assert polled.prediction.api_key_id == polled.key.id
    with session_scope(database_url) as session:
        for row in (polled.key, polled.prediction):
            expected = column_values(session, row)
            assert {name: getattr(row, name) for name in expected} == expected


def test_a_queued_predictions_standing_comes_with_it(
    database_url: str, api_key: str, new_prediction: MakePrediction
) -> None:
    new_prediction()
    behind_one = new_prediction()

    polled = poll(database_url, api_key, behind_one, with_standing=True)

    assert polled is not None and polled.prediction is not None and polled.standing is not None
    assert polled.standing.position >= 1
    with session_scope(database_url) as session:
        prediction = polled.prediction
        assert polled.standing == read_standing(session, prediction.model, prediction.created_at, prediction.id)
    without = poll(database_url, api_key, behind_one)
    assert without is not None and without.standing is None


def test_another_keys_prediction_is_left_out(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        other = create_api_key(session, name="other")

    polled = poll(database_url, other, prediction_id)

    assert polled is not None and polled.key.name == "other"
    assert polled.prediction is None


def test_a_revoked_or_unknown_key_finds_nothing(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        row, doomed = issue_api_key(session, name="doomed")
        revoke_key_row(session, row)

    assert poll(database_url, doomed, prediction_id) is None
    assert poll(database_url, "farm_unknown", prediction_id) is None


def test_a_poll_records_the_keys_use_at_most_once_a_minute(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        key = create_api_key(session, name="used")
    long_ago = datetime.now(UTC) - timedelta(hours=1)

    def last_used() -> datetime | None:
        with session_scope(database_url) as session:
            row = find_active_key(session, key)
            assert row is not None
            return row.last_used_at

    poll(database_url, key, prediction_id)
    first = last_used()
    assert first is not None and first > long_ago
    poll(database_url, key, prediction_id)
    assert last_used() == first  # recorded under a minute ago: no write
    with session_scope(database_url) as session:
        session.execute(update(ApiKey).where(ApiKey.name == "used").values(last_used_at=long_ago))
    poll(database_url, key, prediction_id)
    recorded = last_used()
    assert recorded is not None and recorded > long_ago


# Rows of one key's model 'm': finished runs, then a queue in creation order ('q1' first). No ANALYZE, and
# autovacuum off so that none comes: the statistics say the table is empty, as in a farm's first minute.
DEEP_QUEUE = """
ALTER TABLE predictions SET (autovacuum_enabled = false);
INSERT INTO predictions (id, api_key_id, model, version, input, seed, status, attempt, max_attempts, logs,
                         created_at, started_at, completed_at, gpu_seconds)
SELECT 'd' || n, {key_id}, 'm', 'v', '{{}}', 1, 'succeeded', 1, 1, '', t, t, t, 1.0
FROM generate_series(1, {finished}) AS n, LATERAL (SELECT now() - interval '1 day' + n * interval '1 ms') AS at(t);
INSERT INTO predictions (id, api_key_id, model, version, input, seed, status, attempt, max_attempts, logs, created_at)
SELECT 'q' || n, {key_id}, 'm', 'v', '{{}}', 1, 'starting', 0, 1, '', now() + n * interval '1 ms'
FROM generate_series(1, {queued}) AS n;
"""


@pytest.fixture
def deep_queue(postgres_server: str) -> Iterator[tuple[str, str]]:
    """(database_url, key) of a scratch farm whose key has 3,000 finished runs of model 'm' and 3,000 queued, with
    'q1' at the front."""
    with scratch_database(postgres_server) as database_url:
        alembic(database_url, "upgrade", "head")
        with session_scope(database_url) as session:
            key = create_api_key(session, name="deep")
            key_id = session.execute(text("SELECT id FROM api_keys")).scalar_one()
            session.connection().exec_driver_sql(DEEP_QUEUE.format(key_id=key_id, finished=3000, queued=3000))
        yield database_url, key


def rows_read(plan: dict[str, Any]) -> int:
    """The rows a plan node and those under it produced or filtered out, from EXPLAIN (ANALYZE, FORMAT JSON)."""
    here = plan["Actual Rows"] * plan["Actual Loops"] + plan.get("Rows Removed by Filter", 0)
    return here + sum(rows_read(child) for child in plan.get("Plans", []))


def test_its_standing_reads_a_handful_of_rows_whatever_the_statistics(deep_queue: tuple[str, str]) -> None:
    """The model's last runs and its workers busy now come from partial indexes of just those rows. Without
    them, and with the table's statistics stale, the planner read every row of the model for each: 1 ms a poll
    behind 3,000 queued, 7.7 ms with 20,000 finished too."""
    database_url, key = deep_queue
    statement = PsycopgStatement.compile(ACTIVE_KEY_ITS_PREDICTION_AND_STANDING)
    read = statement.bind(digest=hash_key(key), prediction_id="q1", now=datetime.now(UTC))

    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        explained = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {read.sql}", read.values).fetchone()

    assert explained is not None
    assert rows_read(explained[0][0]["Plan"]) < 100


def test_its_prepared_plan_holds_behind_a_deep_queue(deep_queue: tuple[str, str]) -> None:
    """The read's constants are in its SQL (``PsycopgStatement``), so the generic plan of its prepared statement
    reads the partial indexes for the model's runs. With them sent as parameters, that plan scanned the table:
    Postgres judged it dearer than planning each poll afresh, and did that instead."""
    database_url, key = deep_queue
    with session_scope(database_url) as session:
        session.execute(text("ANALYZE predictions"))

    async def generic_plans() -> int:
        engine = get_read_engine(database_url)
        try:
            async with engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                for _ in range(15):  # prepared from the 6th; Postgres weighs a generic plan from the 6th after
                    await read_polled(driver, key, "q1", with_standing=True)  # type: ignore[arg-type]
                plans = await driver.execute("SELECT sum(generic_plans) FROM pg_prepared_statements")  # type: ignore[union-attr]
                return int((await plans.fetchone())[0] or 0)
        finally:
            await engine.dispose()

    assert asyncio.run(generic_plans()) > 0
