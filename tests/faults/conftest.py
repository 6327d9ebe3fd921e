"""Fixtures of the fault suite: one migrated Postgres data dir per session, copied by each scenario."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.private_services import postgres_template


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    with postgres_template() as template:
        yield template


@pytest.fixture(scope="session", autouse=True)
def s3_credentials() -> None:
    """moto accepts any credentials; boto3 (here, for HEAD checks) wants some."""
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        os.environ.setdefault(name, value)
