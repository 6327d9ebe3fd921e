"""`make bench-scale`: throughput of 1, 2, 4 and 8 worker processes against the ideal, on a SIMULATED model.

Every worker runs the `simulated` preset (worker/pipelines/simulated.py): no inference, a fixed sleep per
image, the rest of the job real (claim, per-step heartbeats, encode, store, finalize), so what is measured
is the farm, not a GPU. For each worker count N, on a scratch database and a flushed Redis database:

1. start the real gateway, outbox relay, webhook dispatcher and N Celery workers (prefork -c 1 each, one per
   GPU as in production) and wait until all N answer a ping;
2. steady load, closed loop: 2 x N clients each POST with ``Prefer: wait`` and submit the next job when the
   answer comes, so about N jobs run and N wait at every moment and no worker idles for want of work;
3. measure over a window after a warm-up: throughput (jobs completed in the window), against the ideal
   N / simulated_seconds; queue wait (created -> claimed); the farm's overhead per job.

Results are printed as a Markdown table and written to var/bench/scale.json and to docs/benchmarks.md
(the section between the bench-scale markers is replaced). A benchmark, not a test: it asserts nothing.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from overhead import MODEL_PATH, PREFER_WAIT, percentile  # noqa: E402
from scratch_farm import scratch_farm  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from api.broker import make_celery  # noqa: E402
from models.db import libpq_url, session_scope  # noqa: E402
from models.tables import Prediction  # noqa: E402
from tests.farm import UNLIMITED, running_farm  # noqa: E402
from tests.services import postgres_server, redis_server  # noqa: E402

WORKER_COUNTS = tuple(int(n) for n in os.environ.get("BENCH_SCALE_WORKERS", "1,2,4,8").split(","))
SIMULATED_SECONDS = float(os.environ.get("BENCH_SIMULATED_SECONDS", "1.0"))
MEASURE_S = float(os.environ.get("BENCH_SCALE_SECONDS", "20"))
WARMUP_S = 4.0  # first jobs: connections opening, the relay and workers waking
CLIENTS_PER_WORKER = 2  # one job running and one waiting per worker: the queue never runs dry
BENCH_REDIS_DB = 13
WORKERS_READY_TIMEOUT_S = 120
PING_TIMEOUT_S = 1.0
ANSWER_TIMEOUT_S = 120
GATEWAY_CLIENTS = 8  # concurrent clients of the gateway-alone probe
GATEWAY_S = 8.0  # seconds of creates, then of polls
EFFICIENCY_GOAL = 0.95  # issue 8, at 8 workers
# A small image in the default format: encoding stays a few milliseconds, as the farm's work should.
JOB_INPUT = {"prompt": "scale probe", "width": 256, "height": 256, "steps": 20, "output_format": "webp"}
DOC = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-scale:begin -->", "<!-- bench-scale:end -->"


@dataclass
class Job:
    sent: float  # time.time() when the client POSTed
    answered: float  # time.time() when the final answer arrived
    body: dict[str, Any]


@dataclass
class Load:
    jobs: list[Job] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(url: str, key: str, stop_at: float, load: Load) -> None:
    """Submit, wait for the answer, repeat until ``stop_at`` (the job in flight then still completes)."""
    headers = {"Authorization": f"Bearer {key}", **PREFER_WAIT}
    with httpx.Client(base_url=url, headers=headers, timeout=ANSWER_TIMEOUT_S) as client:
        while time.time() < stop_at:
            sent = time.time()
            response = client.post(MODEL_PATH, json={"input": JOB_INPUT})
            succeeded = response.status_code == 201 and response.json().get("status") == "succeeded"
            with load.lock:
                if succeeded:
                    load.jobs.append(Job(sent, time.time(), response.json()))
                else:
                    load.errors.append(f"{response.status_code}: {response.text[:300]}")


def wait_for_workers(broker_url: str, count: int) -> None:
    """Until ``count`` workers answer a ping: each answers once its pool child has loaded the preset."""
    celery = make_celery(broker_url)
    deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S
    while len(celery.control.ping(timeout=PING_TIMEOUT_S)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers answered within {WORKERS_READY_TIMEOUT_S} s")


def worker_timelines(database_url: str, ids: list[str]) -> list[list[tuple[datetime, datetime]]]:
    """(claimed, finalized) of the jobs ``ids``, per worker, in order: Postgres's clock, one for all."""
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Prediction.worker, Prediction.started_at, Prediction.completed_at)
            .where(Prediction.id.in_(ids))
            .order_by(Prediction.worker, Prediction.started_at)
        ).all()
    by_worker: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for worker, started, completed in rows:
        by_worker[worker].append((started, completed))
    return list(by_worker.values())


def seconds_between(timelines: list[list[tuple[datetime, datetime]]], start: int, end: int) -> list[list[float]]:
    """Per worker, from element ``end`` of each job to element ``start`` of the next (0 claimed, 1 finalized)."""
    return [
        [(spans[i + 1][start] - spans[i][end]).total_seconds() for i in range(len(spans) - 1)] for spans in timelines
    ]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def quantiles_ms(samples: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": ms(percentile(samples, q)) for q in (50, 95, 99)}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a Celery worker's pool child, uvicorn's reloader-free server …)."""
    parents: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def component_pids(farm: Any, broker_url: str, database_url: str) -> dict[str, list[int]]:
    """The processes of each part of the farm: its own processes, its Redis, its Postgres backends (the machine's
    shared Postgres serves other databases too: only the backends connected to this run's database count)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for name, process in farm.processes.items():
        groups["worker" if name.startswith("worker") else name] += descendants(process.pid)
    groups["redis"] = [int(redis.Redis.from_url(broker_url).info("server")["process_id"])]
    with psycopg.connect(libpq_url(database_url)) as conn:
        database = make_url(database_url).database
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    groups["postgres"] = [pid for (pid,) in rows]
    return groups


CpuSnapshot = dict[str, dict[int, float]]


def cpu_snapshot(farm: Any, broker_url: str, database_url: str) -> CpuSnapshot:
    """CPU seconds so far of every process of each part of the farm, by pid."""
    return {
        name: {pid: process_cpu_s(pid) for pid in pids}
        for name, pids in component_pids(farm, broker_url, database_url).items()
    }


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each part used between two snapshots; a process started in between counts whole (new
    Postgres backends of a growing connection pool)."""
    return {
        name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items()) for name, pids in after.items()
    }


def sleep_until(moment: float) -> None:
    """Wait for a point of the measurement window (the load runs on its own threads meanwhile)."""
    time.sleep(max(0.0, moment - time.time()))


@contextmanager
def fresh_farm(postgres: str, redis_base: str, logs: Path, name: str, workers: int) -> Iterator[tuple[Any, str, str]]:
    """(farm, database_url, broker_url): the farm on a scratch database and a flushed Redis database;
    ``workers`` 0 starts neither relay nor workers (predictions stay queued)."""
    with scratch_farm(postgres, redis_base, BENCH_REDIS_DB, "bench-scale") as (database_url, broker_url, key):
        env = {
            "FARM_DATABASE_URL": database_url,
            "FARM_BROKER_URL": broker_url,
            "FARM_STORAGE_URL": str(logs / f"outputs-{name}"),
            "FARM_MODEL_PRESET": "simulated",
            "FARM_SIMULATED_SECONDS": str(SIMULATED_SECONDS),
            **UNLIMITED,  # the load is many creates from one key
        }
        busy = workers > 0
        with running_farm(
            settings_env=env, key=key, other_key=key, logs=logs / name, relay=busy, worker=busy, workers=workers
        ) as farm:
            yield farm, database_url, broker_url


def measure(workers: int, postgres: str, redis_base: str, logs: Path) -> dict[str, Any]:
    with fresh_farm(postgres, redis_base, logs, f"farm-{workers}", workers) as (farm, database_url, broker_url):
        wait_for_workers(broker_url, workers)
        with farm.client() as client:  # one job alone first: the gateway's lazy set-up is not what is measured
            client.post(MODEL_PATH, json={"input": JOB_INPUT}, headers=PREFER_WAIT).raise_for_status()
        load_before = os.getloadavg()
        started = time.time()
        window = (started + WARMUP_S, started + WARMUP_S + MEASURE_S)
        load = Load()
        clients = [
            threading.Thread(target=client_loop, args=(farm.url, farm.key, window[1], load))
            for _ in range(CLIENTS_PER_WORKER * workers)
        ]
        for client in clients:
            client.start()
        sleep_until(window[0])
        cpu_before = cpu_snapshot(farm, broker_url, database_url)
        sleep_until(window[1])
        cpu = cpu_used(cpu_before, cpu_snapshot(farm, broker_url, database_url))
        for client in clients:
            client.join()
        load_after = os.getloadavg()
        if load.errors:
            raise RuntimeError(f"{len(load.errors)} job(s) did not succeed, e.g. {load.errors[0]}; logs in {logs}")
        begin, end = (datetime.fromtimestamp(edge, UTC) for edge in window)
        in_window = [
            job for job in load.jobs if begin <= datetime.fromisoformat(job.body["completed_at"]) < end
        ]  # fmt: skip
        timelines = worker_timelines(database_url, [job.body["id"] for job in in_window])
    # A busy worker's cycle (one finalize to the next) is one job plus everything the farm adds to it. Summing each
    # worker's 1 / mean cycle counts no partial job at the window's edges (counting jobs in the window would).
    cycles = [worker for worker in seconds_between(timelines, 1, 1) if worker]
    gaps = [gap for worker in seconds_between(timelines, 0, 1) for gap in worker]
    throughput = sum(1 / statistics.mean(worker) for worker in cycles)
    ideal = workers / SIMULATED_SECONDS
    metrics = [job.body["metrics"] for job in in_window]
    model_s = SIMULATED_SECONDS  # per job: one image each
    return {
        "workers": workers,
        "jobs_in_window": len(in_window),
        "jobs_per_worker": sorted(len(spans) for spans in timelines),
        "throughput_per_s": round(throughput, 3),
        "throughput_by_count_per_s": round(len(in_window) / MEASURE_S, 3),
        "ideal_per_s": round(ideal, 3),
        "efficiency": round(throughput / ideal, 4),
        "queue_wait": quantiles_ms([m["queue_time"] for m in metrics]),
        # Capacity lost per job: a busy worker's mean cycle, less the simulated model's time …
        "overhead_per_job_ms": ms(statistics.mean(c for worker in cycles for c in worker) - model_s),
        # … of which inside the job (heartbeats during the sleep; row read, encode, store, finalize) …
        "in_job_overhead_p50_ms": ms(statistics.median(m["gpu_seconds"] - model_s for m in metrics)),
        # … and between jobs on one worker (ack, fetch the next message, claim).
        "between_jobs_gap": quantiles_ms(gaps),
        # What a client saw, less the model's time: includes waiting behind the jobs ahead (the queue wait).
        "end_to_end_minus_model_p50_ms": ms(statistics.median(job.answered - job.sent for job in in_window) - model_s),
        # CPU each part of the farm used per job in the window (the simulated model's sleep uses none).
        "cpu_ms_per_job": {name: ms(cpu[name] / (throughput * MEASURE_S)) for name in sorted(cpu)},
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
    }


def hammer(url: str, key: str, method: str, path: str, body: dict[str, Any] | None, stop_at: float) -> int:
    """Send one request after another until ``stop_at``; return how many got a 2xx."""
    done = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while time.time() < stop_at:
            done += client.request(method, path, json=body).is_success
    return done


def measure_gateway(postgres: str, redis_base: str, logs: Path) -> dict[str, Any]:
    """Creates (no Prefer: wait) and polls of a queued prediction (the dearest poll: it computes queue position
    and ETA) against a gateway alone, GATEWAY_CLIENTS at a time: requests/s here and gateway CPU per request."""
    with fresh_farm(postgres, redis_base, logs, "gateway", workers=0) as (farm, database_url, broker_url):
        with farm.client() as client:
            queued = client.post(MODEL_PATH, json={"input": JOB_INPUT}).json()["id"]
        results = {}
        for name, method, path, body in (
            ("create", "POST", MODEL_PATH, {"input": JOB_INPUT}),
            ("poll", "GET", f"/v1/predictions/{queued}", None),
        ):
            before, started = cpu_snapshot(farm, broker_url, database_url), time.time()
            args = (farm.url, farm.key, method, path, body, started + GATEWAY_S)
            with ThreadPoolExecutor(GATEWAY_CLIENTS) as pool:
                counts = [future.result() for future in [pool.submit(hammer, *args) for _ in range(GATEWAY_CLIENTS)]]
            elapsed, requests = time.time() - started, sum(counts)
            cpu = cpu_used(before, cpu_snapshot(farm, broker_url, database_url))
            results[name] = {
                "requests_per_s": round(requests / elapsed, 1),
                "gateway_cpu_ms": ms(cpu["gateway"] / requests),
                "postgres_cpu_ms": ms(cpu["postgres"] / requests),
            }
        return results


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def machine() -> dict[str, str]:
    total_kib = int(Path("/proc/meminfo").read_text().split()[1])  # MemTotal comes first
    cpu = cpu_model()
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{total_kib / 1024**2:.0f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
    }


def markdown(result: dict[str, Any]) -> str:
    header = (
        "| workers | jobs | throughput (img/s) | ideal (img/s) | efficiency | queue wait p50 / p95 / p99 (ms) "
        "| overhead per job (ms) | in job, p50 (ms) | between jobs p50 / p99 (ms) | end-to-end − model, p50 (ms) "
        "| load avg 1 min before → after |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for run in result["runs"]:
        wait, gap, avg = run["queue_wait"], run["between_jobs_gap"], run["load_average_1m"]
        rows.append(
            f"| {run['workers']} | {run['jobs_in_window']} | {run['throughput_per_s']:.3f} | {run['ideal_per_s']:.3f} "
            f"| **{run['efficiency']:.1%}** | {wait['p50_ms']:.0f} / {wait['p95_ms']:.0f} / {wait['p99_ms']:.0f} "
            f"| {run['overhead_per_job_ms']:.1f} | {run['in_job_overhead_p50_ms']:.1f} "
            f"| {gap['p50_ms']:.1f} / {gap['p99_ms']:.1f} | {run['end_to_end_minus_model_p50_ms']:.0f} "
            f"| {avg['before']:.2f} → {avg['after']:.2f} |"
        )
    parts = sorted(result["runs"][0]["cpu_ms_per_job"])
    cpu_table = (
        "\nCPU time per job, by part of the farm (ms; Postgres: the backends of this run's database):\n\n"
        f"| workers | {' | '.join(parts)} | total |\n|---|{'---|' * (len(parts) + 1)}\n"
        + "\n".join(
            f"| {run['workers']} | "
            + " | ".join(f"{run['cpu_ms_per_job'][part]:.1f}" for part in parts)
            + f" | {sum(run['cpu_ms_per_job'].values()):.1f} |"
            for run in result["runs"]
        )
        + "\n"
    )
    box = result["machine"]
    return (
        f"### {result['date']} — `{result['command']}`\n\n"
        f"Machine: {box['cores']} cores ({box['cpu']}), {box['memory']}, Python {box['python']}. Model: "
        f"**SIMULATED** ({result['simulated_seconds']:g} s of sleep per image, {JOB_INPUT['steps']} steps, "
        f"{JOB_INPUT['width']}×{JOB_INPUT['height']} {JOB_INPUT['output_format']}), not a GPU. "
        f"{result['measure_seconds']:g} s measured per worker count after {WARMUP_S:g} s of warm-up, "
        f"{CLIENTS_PER_WORKER} clients per worker.\n\n"
        f"`uptime` before: `{result['uptime_before']}`; after: `{result['uptime_after']}`.\n\n"
        + header
        + "\n".join(rows)
        + "\n"
        + cpu_table
        + gateway_line(result["gateway"])
    )


def gateway_line(gateway: dict[str, dict[str, float]]) -> str:
    create, poll = gateway["create"], gateway["poll"]
    return (
        f"\nGateway alone (uvicorn, 1 process, {GATEWAY_CLIENTS} clients on the same machine, {GATEWAY_S:g} s "
        f"each): creates without `Prefer: wait` {create['requests_per_s']:.0f}/s (gateway CPU "
        f"{create['gateway_cpu_ms']:.1f} ms, Postgres {create['postgres_cpu_ms']:.1f} ms per request); polls of a "
        "queued prediction "
        f"{poll['requests_per_s']:.0f}/s (gateway CPU {poll['gateway_cpu_ms']:.1f} ms, Postgres "
        f"{poll['postgres_cpu_ms']:.1f} ms per request).\n"
    )


def write_doc(section: str) -> None:
    text = DOC.read_text()
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    uptime_before = machine()["uptime"]
    with tempfile.TemporaryDirectory(prefix="farm-bench-scale-") as scratch, postgres_server() as pg:
        with redis_server() as rd:
            runs = []
            for workers in WORKER_COUNTS:
                print(f"measuring {workers} worker(s) …", flush=True)
                runs.append(measure(workers, pg, rd, Path(scratch)))
            print("measuring the gateway alone …", flush=True)
            gateway = measure_gateway(pg, rd, Path(scratch))
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench-scale",
        "machine": machine(),
        "simulated_seconds": SIMULATED_SECONDS,
        "measure_seconds": MEASURE_S,
        "uptime_before": uptime_before,
        "uptime_after": machine()["uptime"],
        "efficiency_goal_at_8": EFFICIENCY_GOAL,
        "runs": runs,
        "gateway": gateway,
    }
    out = REPO_ROOT / "var" / "bench" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    section = markdown(result)
    write_doc(section)
    print(section)
    print(f"written to {out.relative_to(REPO_ROOT)} and {DOC.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
