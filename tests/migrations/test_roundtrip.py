"""Migrations are revertable: upgrade → downgrade → upgrade on real Postgres."""

import psycopg

from tests.services import alembic, scratch_database


def tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_upgrade_downgrade_upgrade(postgres_server: str) -> None:
    with scratch_database(postgres_server) as url:
        alembic(url, "upgrade", "head")
        assert {"predictions", "api_keys", "outbox", "files", "alembic_version"} <= tables(url)
        alembic(url, "downgrade", "base")
        assert tables(url) == {"alembic_version"}
        alembic(url, "upgrade", "head")
        assert {"predictions", "api_keys", "outbox", "files"} <= tables(url)
