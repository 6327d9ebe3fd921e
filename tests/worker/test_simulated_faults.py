"""The simulated preset's test-only faults (for tests/faults): off without a marker; with one in the prompt,
the job kills its process, or blocks the soft time limit's signal."""

import signal
import subprocess
import sys

from billiard.pool import SIG_SOFT_TIMEOUT  # type: ignore[import-untyped]

from models.inputs import RenderRequest
from tests.services import REPO_ROOT
from worker.pipelines import load_predictor
from worker.pipelines.simulated import SOFT_TIME_LIMIT_SIGNAL, SimulatedFaults

FAULTS = SimulatedFaults(crash_marker="[crash]", ignore_soft_limit_marker="[stuck]")


def request(prompt: str) -> RenderRequest:
    return RenderRequest(
        prompt=prompt,
        negative_prompt="",
        width=64,
        height=64,
        steps=2,
        guidance_scale=5.0,
        seeds=(1,),
        output_format="png",
        output_quality=90,
    )


def test_the_soft_time_limit_signal_is_celerys() -> None:
    assert SOFT_TIME_LIMIT_SIGNAL == SIG_SOFT_TIMEOUT


def run_in_a_child(prompt: str) -> subprocess.CompletedProcess[str]:
    script = f"""
import signal
from worker.pipelines import load_predictor
from tests.worker.test_simulated_faults import FAULTS, request
predictor = load_predictor("simulated", "", simulated_seconds=0, simulated_faults=FAULTS)
predictor.predict(request({prompt!r}), lambda step, total: None)
print("blocked" if signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, []) else "open")
"""
    return subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_the_crash_marker_kills_the_process_every_time() -> None:
    assert run_in_a_child("a fox [crash]").returncode == -signal.SIGKILL
    assert run_in_a_child("a fox [crash] again").returncode == -signal.SIGKILL


def test_the_stuck_marker_blocks_the_soft_time_limit_signal() -> None:
    result = run_in_a_child("a fox [stuck]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "blocked"


def test_without_a_marker_in_the_prompt_nothing_happens() -> None:
    result = run_in_a_child("a fox")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "open"


def test_the_faults_are_off_by_default() -> None:
    predictor = load_predictor("simulated", "", simulated_seconds=0)
    assert len(predictor.predict(request("a fox [crash] [stuck]"), lambda step, total: None)) == 1
