"""`make bench-webhooks`: how long a healthy receiver waits for a terminal webhook.

The real dispatcher process (python -m api.webhook_dispatcher) on a scratch database; this process plays
the worker (create → claim → succeed through models.lifecycle, each committed) and the customer's
receiver (a real HTTP server on loopback). Latency = the terminal transition's commit returned → the
receiver got the request, on one monotonic clock. Results are printed and written to
var/bench/webhook_latency.json.
"""

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from overhead import summary  # noqa: E402

from models import lifecycle  # noqa: E402
from models.catalog import SD35_MEDIUM  # noqa: E402
from models.cost import RunCost  # noqa: E402
from models.db import session_scope  # noqa: E402
from models.keys import create_api_key, find_active_key  # noqa: E402
from models.webhooks import WebhookFormat, WebhookTarget  # noqa: E402
from tests.farm import DISPATCHER_ARGV, spawn, stop  # noqa: E402
from tests.services import alembic, postgres_server, scratch_database  # noqa: E402
from tests.webhook_receiver import Delivery, Receiver, webhook_receiver  # noqa: E402

EVENTS = int(os.environ.get("BENCH_JOBS", "200"))
WARMUP = 10
COST = RunCost.of_run(gpu_seconds=1.0, gpu_class="bench", gpu_hourly_usd=0.0)


def one_terminal_event(database_url: str, api_key_id: int, target: WebhookTarget) -> float:
    """Create, claim and succeed one prediction; the monotonic time its success was committed."""
    with session_scope(database_url) as session:
        new = lifecycle.NewPrediction(
            api_key_id=api_key_id, spec=SD35_MEDIUM, inputs={"prompt": "bench"}, seed=1, max_attempts=1, webhook=target
        )
        prediction = lifecycle.create_prediction(session, new)
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction.id, worker="bench", lease_seconds=60)
    assert claim is not None
    with session_scope(database_url) as session:
        lifecycle.succeed(session, claim, output_keys=[], predict_time=1.0, cost=COST, logs="")
    return time.monotonic()


def nth_delivery(receiver: Receiver, n: int) -> Delivery:
    return receiver.wait_for(lambda got: len(got) >= n)[n - 1]


def measure(database_url: str, logs: Path) -> list[float]:
    with session_scope(database_url) as session:
        key = find_active_key(session, create_api_key(session, name="bench"))
        assert key is not None
        api_key_id = key.id
    env = {
        **os.environ,
        "FARM_DATABASE_URL": database_url,
        "FARM_STORAGE_URL": str(logs / "outputs"),
        "FARM_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    dispatcher = spawn("webhooks", DISPATCHER_ARGV, env, logs)
    try:
        with webhook_receiver() as receiver:
            target = WebhookTarget(receiver.url, ("completed",), WebhookFormat.NATIVE)
            samples = []
            for i in range(WARMUP + EVENTS):
                committed = one_terminal_event(database_url, api_key_id, target)
                arrived = nth_delivery(receiver, i + 1)
                if i >= WARMUP:
                    samples.append(arrived.received_at - committed)
            return samples
    finally:
        stop(dispatcher)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as scratch, postgres_server() as pg:
        with scratch_database(pg) as database_url:
            alembic(database_url, "upgrade", "head")
            samples = measure(database_url, Path(scratch))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "command": "make bench-webhooks",
        "events": EVENTS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "commit_to_receiver": summary(samples),
    }
    out = REPO_ROOT / "var" / "bench" / "webhook_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
