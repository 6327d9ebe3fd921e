"""One fault scenario: private Postgres, Redis and S3, the farm's processes on them (gateway, relay with its
reaper and reconciler, webhook dispatcher, two workers on the simulated model), a webhook receiver, and the
means to hurt each piece and to watch what the farm does about it.

Every wait polls a condition with a deadline; nothing sleeps to synchronise.
"""

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from sqlalchemy import select

from api.broker import make_celery
from models.catalog import SD35_MEDIUM
from models.db import session_scope
from models.keys import create_api_key
from models.queue import TASK_RENDER
from models.tables import Prediction
from tests.farm import Farm, running_farm, spawn
from tests.faults.private_services import (
    PrivatePostgres,
    PrivateRedis,
    PrivateS3,
    private_postgres,
    private_redis,
    private_s3,
)
from tests.webhook_receiver import Receiver, webhook_receiver

T = TypeVar("T")

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
QUEUE = SD35_MEDIUM.queue
TERMINAL = ("succeeded", "failed", "canceled")
MAX_ATTEMPTS = 3
WORKERS = 2
# The simulated model's seconds per image: long enough to be hit mid-job, short enough for a quick suite.
SIMULATED_SECONDS = 1.5
STEPS = 6
# Markers the simulated preset reacts to (test-only settings, set in every scenario, used by a few prompts).
CRASH_MARKER = "[crash-my-worker]"
IGNORE_SOFT_LIMIT_MARKER = "[ignore-the-soft-limit]"
# Short leases and intervals so that recovery takes seconds; production values are in .env.example.
SCENARIO_SETTINGS = {
    "FARM_MODEL_PRESET": "simulated",
    "FARM_SIMULATED_SECONDS": str(SIMULATED_SECONDS),
    "FARM_SIMULATED_CRASH_MARKER": CRASH_MARKER,
    "FARM_SIMULATED_IGNORE_SOFT_LIMIT_MARKER": IGNORE_SOFT_LIMIT_MARKER,
    "FARM_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "FARM_LEASE_SECONDS": "4",
    "FARM_HEARTBEAT_SECONDS": "0.25",
    "FARM_RELAY_POLL_SECONDS": "0.2",
    "FARM_RECONCILE_SECONDS": "2",
    "FARM_TASK_SOFT_TIME_LIMIT_SECONDS": "20",
    "FARM_TASK_TIME_LIMIT_SECONDS": "25",
    "FARM_VISIBILITY_TIMEOUT_SECONDS": "30",
    "FARM_ALLOWED_NETWORKS": "127.0.0.0/8",  # the webhook receiver is on loopback
    "FARM_WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,1,2,2,4,4,8,8",
    "FARM_WEBHOOK_TIMEOUT_SECONDS": "2",
    "FARM_MAX_UNFINISHED_PER_KEY": "100",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Settling after a fault: lease + reaper + a retried job, several times over on a busy 2-core machine.
SETTLE_TIMEOUT_S = 150
WAIT_TIMEOUT_S = 60
# Remote control (pause and resume consuming): each worker answers; the wait ends at the last answer.
CONTROL_TIMEOUT_S = 10
POLL_S = 0.05


def wait_until(what: str, check: Callable[[], T | None], timeout: float = WAIT_TIMEOUT_S) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Scenario:
    farm: Farm
    postgres: PrivatePostgres
    redis: PrivateRedis
    s3: PrivateS3
    receiver: Receiver
    # Every prediction the gateway accepted (201): id → its input.
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- work -----------------------------------------------------------------------------------------

    def submit(self, count: int, *, prompt: str = "a fox in snow", num_images: int = 1) -> list[str]:
        """Create predictions through HTTP, each with a webhook for its terminal event."""
        ids = []
        with self.farm.client() as client:
            for _ in range(count):
                inputs = {
                    "prompt": f"{prompt} #{len(self.accepted)}",
                    "width": 256,
                    "height": 256,
                    "steps": STEPS,
                    "num_images": num_images,
                    "output_format": "png",
                }
                body = {
                    "input": inputs,
                    "webhook": f"{self.receiver.url}/hook",
                    "webhook_events_filter": ["completed"],
                }
                response = client.post(MODEL_PATH, json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
                self.accepted[ids[-1]] = inputs
        return ids

    def webhook_secret(self) -> str:
        with self.farm.client() as client:
            return str(client.get("/v1/webhooks/default/secret").json()["key"])

    # --- what the database says -----------------------------------------------------------------------

    def predictions(self) -> dict[str, Prediction]:
        with session_scope(self.postgres.url) as session:
            return {row.id: row for row in session.scalars(select(Prediction))}

    def prediction(self, prediction_id: str) -> Prediction:
        return self.predictions()[prediction_id]

    def running_job(self, *, min_step: int = 2, max_step: int = STEPS - 2) -> Prediction:
        """Wait for a job in the middle of its denoising (so a fault lands mid-job, not at its edges)."""

        def mid_job() -> Prediction | None:
            for row in self.predictions().values():
                if row.status == "processing" and min_step <= (row.progress_step or 0) <= max_step:
                    return row
            return None

        return wait_until(f"a job between steps {min_step} and {max_step}", mid_job)

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> dict[str, Prediction]:
        """Wait until every accepted prediction is terminal and its terminal webhook was received."""

        def all_terminal() -> dict[str, Prediction] | None:
            rows = self.predictions()
            if all(rows[id_].status in TERMINAL for id_ in self.accepted if id_ in rows):
                return rows
            return None

        try:
            wait_until("every prediction to end", all_terminal, timeout)
            wait_until("every terminal webhook", lambda: self.received_terminal_events() >= len(self.accepted))
        except AssertionError as error:
            states = {id_: (row.status, row.attempt, row.worker) for id_, row in self.predictions().items()}
            raise AssertionError(f"{error}; predictions: {states}\n{self.farm.tail_logs()}") from None
        return self.predictions()

    def received_terminal_events(self) -> int:
        return len({delivery.webhook_id for delivery in self.receiver.deliveries})

    # --- the broker -----------------------------------------------------------------------------------

    def celery(self) -> Celery:
        return make_celery(self.redis.url)

    def queued_messages(self) -> int:
        return int(self.redis.client().llen(QUEUE))

    def unacked_messages(self) -> int:
        return int(self.redis.client().hlen("unacked"))

    def wait_for_workers(self) -> None:
        app = self.celery()
        wait_until(
            f"{WORKERS} workers to answer a ping", lambda: len(app.control.ping(timeout=0.5, limit=WORKERS)) >= WORKERS
        )

    def pause_consuming(self) -> None:
        replies = self.celery().control.cancel_consumer(QUEUE, reply=True, timeout=CONTROL_TIMEOUT_S, limit=WORKERS)
        assert len(replies) == WORKERS, replies

    def resume_consuming(self) -> None:
        replies = self.celery().control.add_consumer(QUEUE, reply=True, timeout=CONTROL_TIMEOUT_S, limit=WORKERS)
        assert len(replies) == WORKERS, replies

    def deliver(self, prediction_id: str) -> None:
        """Put one more message for the prediction on the queue, as the relay does."""
        self.celery().send_task(TASK_RENDER, args=[prediction_id], task_id=prediction_id, queue=QUEUE)

    # --- the farm's processes -------------------------------------------------------------------------

    def worker_parents(self) -> dict[int, str]:
        """pid → name of each Celery worker's main process."""
        return {
            process.pid: name
            for name, process in self.farm.processes.items()
            if name.startswith("worker") and process.poll() is None
        }

    def pool_child(self, row: Prediction) -> int:
        """The pid of the pool child running ``row`` (claims record host:pid), checked to be one of ours."""
        assert row.worker is not None, row.id
        pid = int(row.worker.rsplit(":", 1)[1])
        assert parent_of(pid) in self.worker_parents(), f"{row.worker} is not a child of this farm's workers"
        return pid

    def restart(self, name: str, *, without: tuple[str, ...] = ()) -> None:
        """Start the process ``name`` again (after it died), leaving out the settings in ``without``."""
        old = self.farm.processes[name]
        assert old.poll() is not None, f"{name} is still running"
        env = {key: value for key, value in self.farm.env.items() if key not in without}
        argv = [str(part) for part in old.args]  # type: ignore[union-attr]
        self.farm.processes[name] = spawn(f"{name}-restarted", argv, env, self.farm.logs)

    def log_matches(self, name_prefix: str, pattern: str) -> int:
        """How many lines of the logs of the processes named ``name_prefix``… match ``pattern``."""
        regex = re.compile(pattern)
        return sum(
            1
            for path in self.farm.logs.glob(f"{name_prefix}*.log")
            for line in path.read_text(errors="replace").splitlines()
            if regex.search(line)
        )


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after "(comm) state"


@contextmanager
def fault_scenario(template: Path, root: Path, settings: dict[str, str] | None = None) -> Iterator[Scenario]:
    """Private servers, a webhook receiver and the farm on them; torn down in reverse order."""
    with (
        private_postgres(template, root) as postgres,
        private_redis(root) as redis,
        private_s3(f"faults-{uuid.uuid4().hex[:12]}") as s3,
        webhook_receiver() as receiver,
        farm_on(postgres, redis, s3, receiver, root / "logs", settings) as scenario,
    ):
        yield scenario


@contextmanager
def farm_on(
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    s3: PrivateS3,
    receiver: Receiver,
    logs: Path,
    settings: dict[str, str] | None = None,
) -> Iterator[Scenario]:
    """The farm's processes on the scenario's servers, with two workers."""
    with session_scope(postgres.url) as session:
        keys = [create_api_key(session, name="faults"), create_api_key(session, name="other")]
    env = {
        **SCENARIO_SETTINGS,
        "FARM_DATABASE_URL": postgres.url,
        "FARM_BROKER_URL": redis.url,
        "FARM_STORAGE_URL": s3.storage_url,
        **(settings or {}),
    }
    with running_farm(settings_env=env, key=keys[0], other_key=keys[1], logs=logs, workers=WORKERS) as farm:
        yield Scenario(farm, postgres, redis, s3, receiver)
