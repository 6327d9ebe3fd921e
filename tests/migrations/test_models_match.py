"""The migrations build exactly the schema that models/tables.py declares (columns, indexes, constraints)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from models.tables import Prediction
from tests.services import alembic, scratch_database


def test_migrated_schema_is_the_declared_one(postgres_server: str) -> None:
    with scratch_database(postgres_server) as url:
        alembic(url, "upgrade", "head")
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                differences = compare_metadata(MigrationContext.configure(connection), Prediction.metadata)
        finally:
            engine.dispose()

    assert differences == []
