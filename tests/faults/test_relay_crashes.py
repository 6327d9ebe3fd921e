"""The outbox relay killed between the job's commit and its publish, and between the publish and marking it
sent (failpoints, models/failpoints.py): the restarted relay publishes what is unsent, a duplicate changes
nothing."""

from pathlib import Path

import pytest

from models.failpoints import FAILPOINT_EXIT_CODE
from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import WAIT_TIMEOUT_S, fault_scenario, wait_until

pytestmark = pytest.mark.slow

BATCH = 6


def test_relay_killed_after_commit_before_publish(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path, {"FARM_FAILPOINTS": "relay.before_publish=exit"}) as scenario:
        scenario.submit(BATCH)
        assert scenario.farm.processes["relay"].wait(timeout=WAIT_TIMEOUT_S) == FAILPOINT_EXIT_CODE
        # Accepted and stored, but on no queue: without the outbox these would be lost.
        assert {row.status for row in scenario.predictions().values()} == {"starting"}
        assert scenario.queued_messages() == 0
        scenario.restart("relay", without=("FARM_FAILPOINTS",))

        rows = assert_guarantees(scenario)

    assert all((row.status, row.attempt) == ("succeeded", 1) for row in rows.values())


def test_relay_killed_after_publish_before_marking_sent(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path, {"FARM_FAILPOINTS": "relay.after_publish=exit"}) as scenario:
        scenario.submit(BATCH)
        assert scenario.farm.processes["relay"].wait(timeout=WAIT_TIMEOUT_S) == FAILPOINT_EXIT_CODE
        scenario.restart("relay", without=("FARM_FAILPOINTS",))

        rows = assert_guarantees(scenario)
        # The restarted relay published the first batch again; that copy was refused at its claim.
        refused = wait_until(
            "the republished copy to be refused", lambda: scenario.log_matches("worker", r"not claimable; skipping")
        )

    assert all((row.status, row.attempt) == ("succeeded", 1) for row in rows.values())
    assert refused >= 1
