"""Flower as `make up` starts it (the launcher's own command line and FLOWER_BASIC_AUTH), against the farm
fixture's broker: it refuses callers without the password, sees the worker and every task under the
prediction's id (task events on, task id = prediction id), and cannot control workers (read-only)."""

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.farm import BIN, JOB_TIMEOUT_S, Farm, spawn, stop
from tests.services import free_port, local_stack

USER = "farm"
QUICK = {"prompt": "a fox", "width": 256, "height": 256, "steps": 2, "output_format": "png"}


@dataclass
class Flower:
    url: str
    auth: tuple[str, str]

    def get(self, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", auth=auth or self.auth, timeout=10)

    def poll(self, path: str, done: Any, what: str) -> Any:
        """GET ``path`` (authenticated) until ``done(json)`` gives something; fail after the job timeout."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            response = self.get(path)
            if response.status_code == 200 and (found := done(response.json())):
                return found
            time.sleep(0.2)  # Flower folds events in as they arrive; look again shortly
        raise AssertionError(f"Flower never showed {what}; last answer: {response.status_code} {response.text[:500]}")


@pytest.fixture(scope="module")
def flower(farm: Farm) -> Iterator[Flower]:
    launcher = local_stack()
    argv = dict(launcher.farm_commands(launcher.Settings()))["flower"]
    port = free_port()
    argv = [f"--port={port}" if arg.startswith("--port=") else arg for arg in argv]
    password = secrets.token_urlsafe(18)
    env = {**farm.env, "FLOWER_BASIC_AUTH": f"{USER}:{password}"}
    process = spawn("flower", [str(BIN / argv[0]), *argv[1:]], env, farm.logs)  # argv[0]: celery, of our venv
    running = Flower(url=f"http://127.0.0.1:{port}", auth=(USER, password))
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not healthy(running):
            assert process.poll() is None, f"flower exited with {process.returncode}\n{farm.tail_logs()}"
            assert time.monotonic() < deadline, "flower did not start"
            time.sleep(0.1)
        yield running
    finally:
        stop(process)


def healthy(flower: Flower) -> bool:
    try:
        return httpx.get(f"{flower.url}/healthcheck", timeout=2).status_code == 200  # no auth there
    except httpx.TransportError:
        return False


def test_flower_refuses_callers_without_the_password(flower: Flower) -> None:
    assert httpx.get(f"{flower.url}/", timeout=10).status_code == 401
    assert httpx.get(f"{flower.url}/api/tasks", timeout=10).status_code == 401
    assert flower.get("/", auth=(USER, "wrong")).status_code == 401
    assert flower.get("/").status_code == 200


def test_flower_shows_the_worker_and_each_prediction_as_a_task(farm: Farm, flower: Flower) -> None:
    workers = flower.poll("/workers?json=1", lambda body: body["data"], "the farm's worker")
    # Flower receives events now; a prediction made from here on shows up under its own id.
    with farm.client() as client:
        created = client.post("/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions", json={"input": QUICK})
    assert created.status_code == 201, created.text
    prediction_id = created.json()["id"]
    assert farm.wait(prediction_id)["status"] == "succeeded"

    def succeeded(tasks: dict[str, Any]) -> Any:
        task = tasks.get(prediction_id) or {}
        return task if task.get("state") == "SUCCESS" else None

    task = flower.poll("/api/tasks", succeeded, f"task {prediction_id} succeeded")
    assert task["name"] == "farm.render"
    assert prediction_id in str(task["args"])
    assert task["worker"] in {worker["hostname"] for worker in workers}

    # Read-only: Flower cannot shut workers down or revoke.
    shutdown = httpx.post(f"{flower.url}/api/worker/shutdown/{task['worker']}", auth=flower.auth, timeout=10)
    assert shutdown.status_code == 403
