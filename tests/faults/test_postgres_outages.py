"""Postgres crashing (`pg_ctl stop -m immediate`) and coming back while workers claim and finalize: the
workers retry those transactions with backoff, the relay and the webhook dispatcher reconnect, and every
job ends once."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import fault_scenario, wait_until

pytestmark = pytest.mark.slow

BATCH = 6
# Longer than the outage plus the worker's retry pauses, so a finalize that waited it out still holds its claim.
LONG_LEASE = {"FARM_LEASE_SECONDS": "20"}
POOLED_CONNECTIONS = 6


def test_postgres_down_while_workers_claim(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        # Jobs wait in Redis while Postgres goes down; then the workers take them and must claim without it.
        scenario.wait_for_workers()
        scenario.pause_consuming()
        scenario.submit(BATCH)
        wait_until("the relay to publish the batch", lambda: scenario.queued_messages() == BATCH)
        scenario.postgres.stop_immediately()
        scenario.resume_consuming()
        wait_until(
            "claims to be retried during the outage",
            lambda: scenario.log_matches("worker", r"claim \w+: database unreachable") >= 2,
        )
        scenario.postgres.start()

        rows = assert_guarantees(scenario)

    assert all((row.status, row.attempt) == ("succeeded", 1) for row in rows.values())


def test_postgres_down_while_workers_finalize(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path, LONG_LEASE) as scenario:
        scenario.submit(BATCH)
        victim = scenario.running_job()
        scenario.postgres.stop_immediately()
        # The running job denoises on (its heartbeats are skipped), uploads, and retries its finalize.
        wait_until(
            "a worker to retry its finalize",
            lambda: scenario.log_matches("worker", rf"finish {victim.id} attempt 1: database unreachable") >= 1,
        )
        scenario.postgres.start()

        rows = assert_guarantees(scenario)

    # The retried finalize recorded it: same attempt, no reaping, no second run.
    assert (rows[victim.id].status, rows[victim.id].attempt) == ("succeeded", 1)
    assert all(row.status == "succeeded" for row in rows.values())


def test_polls_answer_through_a_postgres_restart(pg_template: Path, tmp_path: Path) -> None:
    # The read pool does not ping a connection before each use: a poll that meets one the restart killed must be
    # read again on a fresh connection, and the next polls must not meet the other dead ones.
    with fault_scenario(pg_template, tmp_path) as scenario:
        [prediction_id] = scenario.submit(1)
        path = f"/v1/predictions/{prediction_id}"
        with scenario.farm.client() as client, ThreadPoolExecutor(POOLED_CONNECTIONS) as pool:
            # Concurrent polls leave several connections in the gateway's read pool.
            warm = list(pool.map(lambda _: client.get(path).status_code, range(4 * POOLED_CONNECTIONS)))
            assert warm == [200] * len(warm), scenario.farm.tail_logs()
            scenario.postgres.stop_immediately()
            scenario.postgres.start()

            after = [client.get(path) for _ in range(2 * POOLED_CONNECTIONS)]

        assert [response.status_code for response in after] == [200] * len(after), after[0].text
        assert after[-1].json()["id"] == prediction_id
        assert_guarantees(scenario)
