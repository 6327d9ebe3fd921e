"""``farm up``, ``farm worker``, ``farm migrate``: the operator's commands. Each replaces itself with the
process it starts (exec), so signals and the exit code are that process's own."""

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from api.cli.client import fail
from models.catalog import SD35_MEDIUM
from models.queue import worker_arguments

# A source checkout: the launcher and the Alembic configuration (pyproject.toml) live there.
REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "infra" / "local_stack.py"


def executable(name: str) -> str:
    """``name`` from this Python's environment (the venv's bin), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        fail(f"{name} is not installed next to this farm command or on PATH")
    return found


def run_in_checkout(argv: list[str]) -> NoReturn:
    if not LAUNCHER.is_file():
        fail(f"this command needs a source checkout of the farm; {LAUNCHER} does not exist")
    os.chdir(REPO_ROOT)  # as `make up` runs: .env and pyproject.toml are read from here
    os.execv(argv[0], argv)


def up() -> None:
    """Start the whole farm in the foreground, as `make up` does (Ctrl-C stops it)."""
    run_in_checkout([sys.executable, str(LAUNCHER)])


def worker(
    hostname: Annotated[
        str, typer.Option(help="Celery node name; give each worker on a host its own (gpu0@%h, gpu1@%h).")
    ] = "worker@%h",
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run one GPU worker (settings from FARM_*; pick the GPU with CUDA_VISIBLE_DEVICES)."""
    celery = executable("celery")
    os.execv(celery, [celery, *worker_arguments(queue=SD35_MEDIUM.queue, hostname=hostname, loglevel=loglevel)])


def migrate() -> None:
    """Bring the database in FARM_DATABASE_URL to the latest schema (alembic upgrade head)."""
    run_in_checkout([executable("alembic"), "upgrade", "head"])
