"""Real backing services for the tests: Postgres and Redis on loopback.

The machine's own Postgres (127.0.0.1:5432) is used when it answers, otherwise a private one is
started from the project's wheels, as `make up` does; each test session creates databases of its
own. Redis is always a private server per test session (it starts in milliseconds).
"""

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
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


@lru_cache
def local_stack() -> ModuleType:
    """infra/local_stack.py, the `make up` launcher, whose private servers the tests reuse."""
    spec = importlib.util.spec_from_file_location("local_stack", REPO_ROOT / "infra" / "local_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def postgres_server() -> Iterator[str]:
    """A libpq URL of a Postgres maintenance database: the machine's, or a private one."""
    if postgres_answers(SHARED_POSTGRES):
        yield SHARED_POSTGRES
        return
    stack = local_stack()
    # Not under pytest's tmp dir: pytest makes it 0700, which locks out the postgres system user.
    with tempfile.TemporaryDirectory(prefix="farm-test-pg-") as root, ExitStack() as cleanup:
        port = free_port()
        server = stack.start_postgres(Path(root) / "data", port, Path(root) / "postgres.log")
        cleanup.callback(stack.stop_processes, [server])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"


@contextmanager
def redis_server() -> Iterator[str]:
    """A private Redis for this test session (URL without a database number).

    It starts in milliseconds, and unlike the machine's shared server it cannot be flushed or
    consumed from by another test session running at the same time.
    """
    stack = local_stack()
    with tempfile.TemporaryDirectory(prefix="farm-test-redis-") as root, ExitStack() as cleanup:
        port = free_port()
        server = stack.start_redis(Path(root), port, Path(root) / "redis.log")
        cleanup.callback(stack.stop_processes, [server])
        yield f"redis://127.0.0.1:{port}"


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
