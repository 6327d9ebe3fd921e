"""The set-up the farm benchmarks share: a migrated scratch database holding one API key, and a flushed Redis
database for the broker."""

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from models.db import session_scope
from models.keys import create_api_key
from tests.services import alembic, scratch_database


@contextmanager
def scratch_farm(postgres: str, redis_base: str, redis_db: int, key_name: str) -> Iterator[tuple[str, str, str]]:
    """(database_url, broker_url, api key) for a farm of the benchmark's own; the database is dropped after."""
    with scratch_database(postgres) as database_url:
        alembic(database_url, "upgrade", "head")
        with session_scope(database_url) as session:
            key = create_api_key(session, name=key_name)
        broker_url = f"{redis_base}/{redis_db}"
        redis.Redis.from_url(broker_url).flushdb()
        yield database_url, broker_url, key
