"""Worker processes dying mid-job: the pool child, the whole worker, a polite stop, a job that kills its worker."""

import os
import signal
from pathlib import Path

import pytest

from models.lifecycle import LEASE_EXPIRED_ERROR
from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import CRASH_MARKER, MAX_ATTEMPTS, WAIT_TIMEOUT_S, fault_scenario, parent_of, wait_until

pytestmark = pytest.mark.slow


def test_a_pool_child_killed_mid_job_is_requeued_and_finishes(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        scenario.submit(6)
        victim = scenario.running_job()
        os.kill(scenario.pool_child(victim), signal.SIGKILL)

        rows = assert_guarantees(scenario)

    # Celery requeues the message (reject on worker lost); its claim fails while the lease holds, then the
    # reaper requeues the prediction and a second attempt runs it.
    assert rows[victim.id].status == "succeeded"
    assert rows[victim.id].attempt >= 2
    assert all(row.status == "succeeded" for row in rows.values())


def test_a_worker_killed_mid_job_leaves_its_job_to_another(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        scenario.submit(6)
        victim = scenario.running_job()
        parent = parent_of(scenario.pool_child(victim))
        os.kill(parent, signal.SIGKILL)  # its child dies with it (PR_SET_PDEATHSIG)

        rows = assert_guarantees(scenario)

    assert rows[victim.id].status == "succeeded"
    assert rows[victim.id].attempt >= 2
    assert rows[victim.id].worker != victim.worker
    assert all(row.status == "succeeded" for row in rows.values())


def test_sigterm_lets_the_running_job_finish(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        scenario.submit(6)
        victim = scenario.running_job()
        parent = parent_of(scenario.pool_child(victim))
        [name] = [name for pid, name in scenario.worker_parents().items() if pid == parent]
        os.kill(parent, signal.SIGTERM)  # warm shutdown, as a deploy or `docker stop` sends
        exit_code = scenario.farm.processes[name].wait(timeout=WAIT_TIMEOUT_S)
        finished = scenario.prediction(victim.id)

        rows = assert_guarantees(scenario)

    assert exit_code == 0
    # Done by the stopping worker before it exited, in its first attempt.
    assert (finished.status, finished.attempt, finished.worker) == ("succeeded", 1, victim.worker)
    assert rows[victim.id].attempt == 1
    assert all(row.status == "succeeded" for row in rows.values())


def test_a_job_that_kills_its_worker_every_time_ends_failed(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        [poison] = scenario.submit(1, prompt=f"a fox {CRASH_MARKER}")
        scenario.submit(4)

        rows = assert_guarantees(scenario)
        # No message loop: once the poison job failed, its redeliveries are acknowledged and the queue drains.
        wait_until("the queue to drain", lambda: scenario.queued_messages() == 0 and scenario.unacked_messages() == 0)

    assert rows[poison].status == "failed"
    assert rows[poison].attempt == MAX_ATTEMPTS
    assert rows[poison].error == LEASE_EXPIRED_ERROR.format(attempts=MAX_ATTEMPTS)
    assert all(row.status == "succeeded" for id_, row in rows.items() if id_ != poison)
