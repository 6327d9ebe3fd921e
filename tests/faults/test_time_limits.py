"""Jobs that run too long: the soft time limit ends them with a readable error; a job that ignores it is
killed at the hard limit, ends failed at once (no retry loop), and the worker goes on with the next job."""

from pathlib import Path

import pytest

from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import IGNORE_SOFT_LIMIT_MARKER, fault_scenario
from worker.hard_time_limit import HARD_TIME_LIMIT_ERROR
from worker.runner import SOFT_TIME_LIMIT_ERROR

pytestmark = pytest.mark.slow

# Quick jobs (1.5 s) stay far below the soft limit even on a busy machine; 4 images (6 s) pass both limits.
SOFT_LIMIT_S = 4.0
HARD_LIMIT_S = 5.5
SECONDS_PER_IMAGE = 1.5
LIMITS = {
    "FARM_SIMULATED_SECONDS": str(SECONDS_PER_IMAGE),
    "FARM_TASK_SOFT_TIME_LIMIT_SECONDS": str(SOFT_LIMIT_S),
    "FARM_TASK_TIME_LIMIT_SECONDS": str(HARD_LIMIT_S),
}


def test_overlong_jobs_end_failed_and_the_workers_go_on(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path, LIMITS) as scenario:
        # 4 images take 6 s: past the soft limit; with the soft limit ignored, past the hard one too.
        [overlong] = scenario.submit(1, prompt="a slow fox", num_images=4)
        [stuck] = scenario.submit(1, prompt=f"a stuck fox {IGNORE_SOFT_LIMIT_MARKER}", num_images=4)
        quick = scenario.submit(4)  # 1.5 s each: some run on the replaced pool child

        rows = assert_guarantees(scenario)

    assert (rows[overlong].status, rows[overlong].attempt) == ("failed", 1)
    assert rows[overlong].error == SOFT_TIME_LIMIT_ERROR.format(seconds=SOFT_LIMIT_S)
    assert (rows[stuck].status, rows[stuck].attempt) == ("failed", 1)
    assert rows[stuck].error == HARD_TIME_LIMIT_ERROR.format(seconds=HARD_LIMIT_S)
    assert all(rows[id_].status == "succeeded" for id_ in quick)
    assert scenario.log_matches("worker", rf"Hard time limit \({HARD_LIMIT_S:g}s\) exceeded") == 1
