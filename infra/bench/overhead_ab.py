"""Farm overhead per job of two checkouts side by side: whether a change saves or costs time. Not a test.

    python infra/bench/overhead_ab.py ROOT_A ROOT_B [ROUNDS]

ROOT_A and ROOT_B are checkouts of this repository (say this one and a ``git worktree`` of another commit). Their
farms, as ``make bench`` runs one (gateway, relay, worker; tiny preset), run at the same time on one Postgres and
one Redis, each on its own code, and take turns in rounds of 20 jobs, the first turn alternating. Both thus see
the same machine state: runs of ``make bench`` one after the other differ by more than most changes do. Prints
each farm's overhead p50, B − A with a bootstrap 95% interval, and each farm's CPU per job by process. Which farm
is B has shown a bias of up to 1 ms: run it again with the roots swapped.
"""

import os
import random
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from overhead import BENCH_REDIS_DB, ROUND, WARMUP, farm  # noqa: E402

from tests.farm import Farm  # noqa: E402
from tests.services import postgres_server, redis_server  # noqa: E402

ROUNDS = 15  # of 20 jobs per farm: 300 jobs each
RESAMPLES = 2000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in these


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants (a Celery worker's pool child), from /proc."""
    proc = Path("/proc") / str(pid)
    fields = (proc / "stat").read_text().rpartition(")")[2].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    for task in (proc / "task").iterdir():
        for child in (task / "children").read_text().split():
            total += cpu_seconds(int(child))
    return total


def cpu_by_process(running: Farm) -> dict[str, float]:
    return {name: cpu_seconds(process.pid) for name, process in running.processes.items()}


def main() -> None:
    roots = {"A": Path(sys.argv[1]).resolve(), "B": Path(sys.argv[2]).resolve()}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else ROUNDS
    overheads: dict[str, list[float]] = {name: [] for name in roots}
    with tempfile.TemporaryDirectory(prefix="farm-bench-ab-") as scratch, ExitStack() as stack:
        postgres, redis_base = stack.enter_context(postgres_server()), stack.enter_context(redis_server())
        farms: list[tuple[str, Callable[[], dict[str, float]], Farm]] = []
        for (name, root), redis_db in zip(roots.items(), (BENCH_REDIS_DB, BENCH_REDIS_DB - 1), strict=True):
            job, running = stack.enter_context(farm(postgres, redis_base, Path(scratch) / name, redis_db, root))
            farms.append((name, job, running))
        for _ in range(WARMUP):
            for _, job, _ in farms:
                job()
        cpu_before = {name: cpu_by_process(running) for name, _, running in farms}
        for turn in range(rounds):
            for name, job, _ in farms if turn % 2 == 0 else farms[::-1]:
                overheads[name].extend(job()["overhead"] * 1000 for _ in range(ROUND))
        for name, _, running in farms:
            jobs = len(overheads[name])
            cpu = ", ".join(
                f"{process} {(seconds - cpu_before[name][process]) / jobs * 1000:.2f}"
                for process, seconds in cpu_by_process(running).items()
            )
            print(f"{name} {roots[name]}: overhead p50 {statistics.median(overheads[name]):.2f} ms; CPU ms/job: {cpu}")
    a, b = overheads["A"], overheads["B"]
    differences = sorted(
        statistics.median(random.choices(b, k=len(b))) - statistics.median(random.choices(a, k=len(a)))
        for _ in range(RESAMPLES)
    )
    low, high = differences[int(0.025 * RESAMPLES)], differences[int(0.975 * RESAMPLES) - 1]
    difference = statistics.median(b) - statistics.median(a)
    print(f"B - A: {difference:+.2f} ms (95% interval {low:+.2f} to {high:+.2f}), {len(a)} jobs each")


if __name__ == "__main__":
    main()
