"""The same prediction delivered twice at once (Redis redelivery, a republish, a relay retry): one execution
claims it, the other changes nothing."""

import signal
from pathlib import Path

import pytest

from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import WAIT_TIMEOUT_S, fault_scenario, wait_until

pytestmark = pytest.mark.slow

COPIES = 2


def test_a_prediction_delivered_twice_at_once_runs_once(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        # The relay stops first, so that the test alone decides what is on the queue: each prediction twice in a
        # row, which the two workers take at the same moment.
        relay = scenario.farm.processes["relay"]
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=WAIT_TIMEOUT_S)
        scenario.wait_for_workers()
        scenario.pause_consuming()
        ids = scenario.submit(6)
        for prediction_id in ids:
            for _ in range(COPIES):
                scenario.deliver(prediction_id)
        scenario.resume_consuming()
        scenario.restart("relay")  # publishes its unsent outbox rows: a third copy of each

        rows = assert_guarantees(scenario)
        # Every copy but the one that ran was refused at its claim.
        skipped = wait_until(
            "the extra copies to be refused",
            lambda: (n := scenario.log_matches("worker", r"not claimable; skipping")) >= 2 * len(ids) and n,
        )

    assert all((row.status, row.attempt) == ("succeeded", 1) for row in rows.values())
    assert skipped >= 2 * len(ids)
