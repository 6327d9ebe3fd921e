"""Redis killed mid-run: restarted on its AOF, and restarted empty. Postgres holds every job, so the relay's
reconciler republishes whatever Redis lost, and jobs interrupted by the lost connection are requeued by the
reaper."""

from pathlib import Path

import pytest

from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import Scenario, fault_scenario, wait_until

pytestmark = pytest.mark.slow

BATCH = 8  # more than the two workers hold: some wait in Redis when it dies


def kill_redis_mid_run(scenario: Scenario, *, wipe: bool) -> None:
    scenario.submit(BATCH)
    scenario.running_job()
    wait_until("messages waiting in Redis", lambda: scenario.queued_messages() > 0)
    scenario.redis.kill()
    if wipe:
        scenario.redis.wipe()
    scenario.redis.start()


def test_redis_killed_and_restarted_from_its_aof_loses_nothing(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        kill_redis_mid_run(scenario, wipe=False)

        rows = assert_guarantees(scenario)

    assert all(row.status == "succeeded" for row in rows.values())


def test_redis_restarted_empty_is_refilled_by_the_reconciler(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        kill_redis_mid_run(scenario, wipe=True)

        rows = assert_guarantees(scenario)
        republished = scenario.log_matches("relay", r"republished \d+ prediction\(s\) whose message was not in Redis")

    assert all(row.status == "succeeded" for row in rows.values())
    assert republished >= 1


def test_the_gateway_takes_work_while_redis_is_down(pg_template: Path, tmp_path: Path) -> None:
    """Rate limits fail open and Postgres holds the jobs: creates and polls answer while Redis is down, and the
    jobs run once it is back."""
    with fault_scenario(pg_template, tmp_path) as scenario:
        scenario.redis.kill()
        accepted = scenario.submit(2)  # each answered 201
        with scenario.farm.client() as client:
            poll = client.get(f"/v1/predictions/{accepted[0]}")
        scenario.redis.start()

        rows = assert_guarantees(scenario)

    assert poll.status_code == 200 and poll.json()["status"] == "starting", poll.text
    assert "X-RateLimit-Remaining" not in poll.headers  # not counted, not refused
    assert all(rows[prediction_id].status == "succeeded" for prediction_id in accepted)
