"""Session-wide real services and one running farm per storage backend."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

from models.db import session_scope
from models.keys import create_api_key
from tests import services
from tests.farm import UNLIMITED, Farm, running_farm
from tests.services import TEST_REDIS_DB, alembic, free_port, scratch_database

S3_BUCKET = "farm-test-outputs"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A libpq URL of a Postgres server's maintenance database (the machine's, else a private one)."""
    with services.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A migrated database of this test session's own."""
    with scratch_database(postgres_server) as url:
        alembic(url, "upgrade", "head")
        yield url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A Redis URL without database number (the machine's, else a private one)."""
    with services.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def broker_url(redis_server: str) -> str:
    url = f"{redis_server}/{TEST_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto in server mode) with the test bucket."""
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def api_key(database_url: str) -> str:
    """A key in the in-process tests' database."""
    with session_scope(database_url) as session:
        return create_api_key(session, name="test")


@contextmanager
def isolated_farm(
    postgres_server: str,
    redis_server: str,
    redis_db: int,
    storage_url: str,
    root: Path,
    *,
    relay: bool = True,
    worker: bool = True,
    workers: int = 1,
    settings_env: dict[str, str] | None = None,
) -> Iterator[Farm]:
    """A farm with its own database and Redis database, so its worker never takes another farm's jobs.

    ``settings_env`` adds or overrides FARM_* settings (e.g. another model preset)."""
    with scratch_database(postgres_server) as database_url:
        alembic(database_url, "upgrade", "head")
        broker_url = f"{redis_server}/{redis_db}"
        redis.Redis.from_url(broker_url).flushdb()
        with session_scope(database_url) as session:
            keys = [create_api_key(session, name="test"), create_api_key(session, name="other")]
        env = {
            "FARM_DATABASE_URL": database_url,
            "FARM_BROKER_URL": broker_url,
            "FARM_STORAGE_URL": storage_url,
            "FARM_MODEL_PRESET": "tiny",
            "FARM_RELAY_POLL_SECONDS": "0.2",
            # Many tests share one key; the limits' own tests give their keys limits of their own.
            **UNLIMITED,
            **(settings_env or {}),
        }
        with running_farm(
            settings_env=env,
            key=keys[0],
            other_key=keys[1],
            logs=root / "logs",
            relay=relay,
            worker=worker,
            workers=workers,
        ) as running:
            yield running


@pytest.fixture(scope="session")
def farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """The whole farm with local-directory storage, as `make up` runs it."""
    root = tmp_path_factory.mktemp("farm")
    with isolated_farm(postgres_server, redis_server, TEST_REDIS_DB + 1, str(root / "outputs"), root) as running:
        yield running


@pytest.fixture(scope="session")
def s3_farm(
    postgres_server: str, redis_server: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    """The whole farm storing outputs in an S3 endpoint."""
    root = tmp_path_factory.mktemp("s3farm")
    storage_url = f"s3://{S3_BUCKET}?endpoint_url={s3_endpoint}"
    with isolated_farm(postgres_server, redis_server, TEST_REDIS_DB + 2, storage_url, root) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """The gateway alone: predictions stay queued, so API behaviour is tested without a worker racing."""
    root = tmp_path_factory.mktemp("gateway")
    with isolated_farm(
        postgres_server, redis_server, TEST_REDIS_DB + 3, str(root / "outputs"), root, relay=False, worker=False
    ) as running:
        yield running
