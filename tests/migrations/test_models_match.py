"""The migrations build exactly the schema that models/tables.py declares (columns, indexes, constraints)."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from models.tables import Prediction
from tests.services import alembic, scratch_database

# Alembic compares an expression index as written against Postgres's rewrite of it, so it always reports a
# difference: these are checked by name only.
EXPRESSION_INDEXES = {"ix_predictions_queue_order"}


def compared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def test_migrated_schema_is_the_declared_one(postgres_server: str) -> None:
    with scratch_database(postgres_server) as url:
        alembic(url, "upgrade", "head")
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"include_object": compared})
                differences = compare_metadata(context, Prediction.metadata)
                indexes = {index["name"] for index in inspect(connection).get_indexes("predictions")}
        finally:
            engine.dispose()

    assert differences == []
    assert EXPRESSION_INDEXES <= indexes
