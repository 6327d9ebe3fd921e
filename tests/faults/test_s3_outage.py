"""The object store down while workers upload: those predictions end failed with the storage error, never
succeeded without their objects; once the store is back, the rest succeed."""

from pathlib import Path

import pytest

from tests.faults.invariants import assert_guarantees
from tests.faults.scenario import TERMINAL, fault_scenario, wait_until

pytestmark = pytest.mark.slow


def test_s3_down_during_upload_never_leaves_a_success_without_objects(pg_template: Path, tmp_path: Path) -> None:
    with fault_scenario(pg_template, tmp_path) as scenario:
        scenario.submit(6)
        victim = scenario.running_job()
        scenario.s3.stop()
        # Down until the job that was mid-denoise reached its upload and ended.
        wait_until("the job to end without its store", lambda: scenario.prediction(victim.id).status in TERMINAL)
        scenario.s3.start()

        rows = assert_guarantees(scenario)

    assert rows[victim.id].status == "failed"
    assert "Could not connect to the endpoint URL" in (rows[victim.id].error or "")
    assert any(row.status == "succeeded" for row in rows.values())  # the store's return is noticed
