"""The farm as real processes for end-to-end tests: gateway (uvicorn), outbox relay, webhook dispatcher,
Celery worker."""

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from models.catalog import SD35_MEDIUM
from models.queue import worker_arguments
from tests.services import REPO_ROOT, free_port

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60
# Long enough for a tiny-preset job on a loaded 2-core machine; a hang still fails the test.
JOB_TIMEOUT_S = 120
TERMINAL = ("succeeded", "failed", "canceled")
DISPATCHER_ARGV = [sys.executable, "-m", "api.webhook_dispatcher"]
# Per-key limits out of the way, for test farms whose tests share one key and for benchmarks (the limits
# are still counted, so their cost is measured).
UNLIMITED = {
    "FARM_CREATE_RATE_LIMIT_PER_MINUTE": "1000000",
    "FARM_READ_RATE_LIMIT_PER_MINUTE": "1000000",
    "FARM_MAX_UNFINISHED_PER_KEY": "1000000",
}


@dataclass
class Farm:
    url: str
    key: str
    other_key: str  # a second caller, for isolation checks
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait(self, prediction_id: str, statuses: tuple[str, ...] = TERMINAL, key: str | None = None) -> dict[str, Any]:
        """Poll until the prediction reaches one of ``statuses``; fail with the worker log on timeout."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        with self.client(key) as client:
            while time.monotonic() < deadline:
                body: dict[str, Any] = client.get(f"/v1/predictions/{prediction_id}").json()
                if body["status"] in statuses:
                    return body
                time.sleep(0.05)  # polling interval of the client, as a real client polls
        raise AssertionError(f"{prediction_id} still {body['status']}; logs:\n{self.tail_logs()}")

    def tail_logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in self.logs.glob("*.log")
        )


def spawn(
    name: str, argv: list[str], env: dict[str, str], logs: Path, cwd: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway at {url} not healthy after {START_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop them together: all get SIGTERM at once, so the workers' warm shutdowns (seconds each) overlap."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_farm(
    *,
    settings_env: dict[str, str],
    key: str,
    other_key: str,
    logs: Path,
    relay: bool = True,
    worker: bool = True,
    workers: int = 1,
    code_root: Path | None = None,
) -> Iterator[Farm]:
    """Start the gateway (and relay with the webhook dispatcher, and worker, unless disabled); stop them all on
    exit.

    ``workers`` worker processes (each prefork ``-c 1``, as one per GPU) are named ``worker``, ``worker-2``…
    ``code_root``: another checkout of this repository (a ``git worktree`` of another commit) whose code these
    processes run: they start in it, with PYTHONPATH pointing at it (benchmarks comparing two commits).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **settings_env, "FARM_PUBLIC_URL": url, "PYTHONUNBUFFERED": "1"}
    if code_root is not None:
        env["PYTHONPATH"] = str(code_root)
    logs.mkdir(parents=True, exist_ok=True)
    farm = Farm(url=url, key=key, other_key=other_key, env=env, logs=logs)
    with ExitStack() as stack:
        commands = {"gateway": [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]}
        if relay:
            commands["relay"] = [sys.executable, "-m", "api.relay"]
            commands["webhooks"] = DISPATCHER_ARGV
        for index in range(1, workers + 1 if worker else 1):
            commands["worker" if index == 1 else f"worker-{index}"] = [
                str(BIN / "celery"),
                *worker_arguments(queue=SD35_MEDIUM.queue, hostname=f"test-{port}-{index}@%h"),
                "--without-gossip",
                "--without-mingle",
            ]
        for name, argv in commands.items():
            farm.processes[name] = spawn(name, argv, env, logs, cwd=code_root or REPO_ROOT)
        # Stops whatever runs under each name at exit, also a process a test restarted.
        stack.callback(lambda: stop_all(list(farm.processes.values())))
        wait_healthy(url, farm.processes["gateway"])
        yield farm


@contextmanager
def extra_gateway(farm: Farm, settings_env: dict[str, str], name: str) -> Iterator[Farm]:
    """Another gateway process in front of ``farm``'s database and broker, with some settings changed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**farm.env, **settings_env, "FARM_PUBLIC_URL": url}
    argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(name, argv, env, farm.logs)
    try:
        wait_healthy(url, process)
        yield dataclasses.replace(farm, url=url, env=env, processes={"gateway": process})
    finally:
        stop(process)
