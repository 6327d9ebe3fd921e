"""`make bench-gateway`: how many creates and polls per second the gateway answers, at what p99 latency.

The real gateway (uvicorn, GATEWAY_PROCESSES processes) and outbox relay on a scratch database with the
machine's Postgres and a Redis broker; load from `wrk` (a separate process, C, keep-alive connections)
on loopback, bounded in time. Per-key limits are lifted (one key makes all the load) but still counted
in Redis, so their cost is in the numbers. Then the same load on the ceilings of `floor_app` (the same
server stack answering a constant, and one prediction read), as many processes, so the gateway's numbers
can be read against what this machine allows. Results are printed and written to
var/bench/gateway_capacity.json.
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from scratch_farm import scratch_farm  # noqa: E402

from tests.farm import BIN, UNLIMITED, spawn, stop, wait_healthy  # noqa: E402
from tests.services import free_port, postgres_server, redis_server  # noqa: E402

GATEWAY_PROCESSES = int(os.environ.get("BENCH_GATEWAY_PROCESSES", "2"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = {"create": 16, "poll": 32}
BENCH_REDIS_DB = 13
MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
JOB = {"input": {"prompt": "capacity probe", "width": 256, "height": 256, "steps": 1}}
LUA = """
wrk.method = "{method}"
wrk.body = '{body}'
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, *, method: str, key: str, connections: int, scratch: Path, body: str = "") -> dict[str, Any]:
    script = scratch / f"{method.lower()}.lua"
    script.write_text(LUA.format(method=method, body=body, key=key))
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{SECONDS}s", "--latency", "-s", str(script), url]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),  # type: ignore[index]
        "p50_ms": latency_ms(output, "50%"),
        "p99_ms": latency_ms(output, "99%"),
        "connections": connections,
        "non_2xx": int(errors[1]) if errors else 0,
    }


def latency_ms(output: str, quantile: str) -> float:
    value, unit = re.search(rf"^\s+{quantile}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def measure(postgres: str, redis_base: str, scratch: Path) -> dict[str, Any]:
    with scratch_farm(postgres, redis_base, BENCH_REDIS_DB, "bench-gateway") as (database_url, broker_url, key):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "FARM_DATABASE_URL": database_url,
            "FARM_BROKER_URL": broker_url,
            "FARM_STORAGE_URL": str(scratch / "outputs"),
            "FARM_PUBLIC_URL": url,
            **UNLIMITED,
        }
        gateway_argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
        gateway = spawn("gateway", [*gateway_argv, "--workers", str(GATEWAY_PROCESSES)], env, scratch)
        relay = spawn("relay", [sys.executable, "-m", "api.relay"], env, scratch)
        try:
            wait_healthy(url, gateway)
            created = httpx.post(f"{url}{MODEL_PATH}", json=JOB, headers={"Authorization": f"Bearer {key}"}).json()
            results = {
                "create": wrk(
                    f"{url}{MODEL_PATH}",
                    method="POST",
                    key=key,
                    connections=CONNECTIONS["create"],
                    scratch=scratch,
                    body=json.dumps(JOB),
                ),
                "poll": wrk(
                    f"{url}/v1/predictions/{created['id']}",
                    method="GET",
                    key=key,
                    connections=CONNECTIONS["poll"],
                    scratch=scratch,
                ),
            }
        finally:
            stop(gateway)
            stop(relay)
        results["ceilings"] = ceilings(env, created["id"], scratch)
    return results


def ceilings(env: dict[str, str], prediction_id: str, scratch: Path) -> dict[str, Any]:
    """`floor_app` under the poll's load: a constant answer, and one read of the polled prediction."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "uvicorn"), "floor_app:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    floor_env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)])}
    server = spawn("floor", [*argv, "--workers", str(GATEWAY_PROCESSES)], floor_env, scratch)
    try:
        wait_healthy(url, server)
        return {
            name: wrk(f"{url}{path}", method="GET", key="", connections=CONNECTIONS["poll"], scratch=scratch)
            for name, path in (("constant", "/constant"), ("one_read", f"/read/{prediction_id}"))
        }
    finally:
        stop(server)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `make bench-gateway` installs it (apt-get install wrk).")
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as scratch, postgres_server() as pg, redis_server() as rd:
        load_before = os.getloadavg()[0]
        results = measure(pg, rd, Path(scratch))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "command": "make bench-gateway",
        "gateway_processes": GATEWAY_PROCESSES,
        "seconds_per_run": SECONDS,
        "load_average_1m_before": round(load_before, 2),
        **results,
    }
    out = REPO_ROOT / "var" / "bench" / "gateway_capacity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
