"""Real backing services for the tests: Postgres, Redis and an S3 endpoint on loopback.

The machine's own Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) are used when they answer;
otherwise private ones are started from the project's wheels, as `make up` does. Each test session
gets its own database and Redis database number, so nothing outside it is touched.
"""

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARED_REDIS = "redis://127.0.0.1:6379"
# Redis database numbers the test sessions use (the shared server keeps the others for itself).
TEST_REDIS_DB = 11


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on ``server_url`` (a libpq URL); yields its SQLAlchemy URL."""
    name = f"farm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic(database_url: str, *args: str) -> None:
    """Run the project's Alembic CLI against ``database_url``."""
    subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "-x", f"database_url={database_url}", *args],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        env={**os.environ},
    )
