"""worker.gpu_slot: replicas of one worker service on one host each take a different GPU, never the same."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import REPO_ROOT
from worker.gpu_slot import EXIT_NO_GPU, NoFreeGpu, candidate_gpus, lock_name, take_gpu

# Stands in for the Celery worker: reports the GPU it was given, then holds it until its stdin closes.
HOLDER = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); sys.stdin.read()"


def test_candidates_are_the_listed_devices_or_one_per_device_node(tmp_path: Path) -> None:
    assert candidate_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}) == ["GPU-aa", "GPU-bb"]
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"):
        (tmp_path / name).touch()
    assert candidate_gpus({}, device_dir=tmp_path) == ["0", "1", "2"]
    assert candidate_gpus({"CUDA_VISIBLE_DEVICES": ""}, device_dir=tmp_path / "none") == []


def test_lock_names_are_safe_for_uuids() -> None:
    assert lock_name("3") == "gpu-3.lock"
    assert lock_name("MIG-GPU-6f1c/1/0") == "gpu-MIG-GPU-6f1c_1_0.lock"


def test_a_held_gpu_is_skipped_and_none_left_is_an_error(tmp_path: Path) -> None:
    first, fd = take_gpu(["0", "1"], tmp_path)
    second, fd2 = take_gpu(["0", "1"], tmp_path)
    try:
        assert (first, second) == ("0", "1")
        with pytest.raises(NoFreeGpu, match="run at most 2 worker replicas"):
            take_gpu(["0", "1"], tmp_path)
    finally:
        os.close(fd)
        os.close(fd2)
    with pytest.raises(NoFreeGpu, match="no GPU is visible"):
        take_gpu([], tmp_path)


class Replica:
    """One `python -m worker.gpu_slot` process, as one compose replica of the worker runs it."""

    def __init__(self, lock_dir: Path) -> None:
        argv = [sys.executable, "-m", "worker.gpu_slot", "--lock-dir", str(lock_dir), "--"]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}
        self.process = subprocess.Popen(
            [*argv, sys.executable, "-c", HOLDER],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def gpu(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()  # blocks until the exec'd worker reports

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.communicate(input="", timeout=30)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def test_replicas_take_distinct_gpus_and_a_stopped_one_frees_its_gpu(tmp_path: Path, replicas: list[Replica]) -> None:
    first, second = Replica(tmp_path), Replica(tmp_path)
    replicas += [first, second]
    gpus = {first.gpu(): first, second.gpu(): second}
    assert sorted(gpus) == ["0", "1"]

    third = Replica(tmp_path)
    replicas.append(third)
    _, stderr = third.process.communicate(timeout=30)
    assert third.process.returncode == EXIT_NO_GPU
    assert "all 2 GPU(s) of this host (0, 1) are taken" in stderr

    gpus["0"].stop()  # the kernel drops the lock with the process: a restarted replica gets GPU 0 back
    restarted = Replica(tmp_path)
    replicas.append(restarted)
    assert restarted.gpu() == "0"
