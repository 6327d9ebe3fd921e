"""`make bench-gpu`'s harness, run on the CPU with the tiny preset: its plumbing, never a GPU measurement."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = REPO_ROOT / "infra" / "bench" / "gpu.py"
TINY_CPU = [
    "--preset", "tiny", "--device", "cpu", "--size", "64", "--steps", "2", "--repeats", "2",
    "--batch-sizes", "1,2", "--batch-size-px", "64", "--compile-backend", "eager",
]  # fmt: skip
ALL_VARIANTS = {
    "eager", "fuse_qkv", "attention_cudnn", "vae_channels_last", "compile", "compile_max_autotune", "cuda_graphs",
    "all", "fp8", "compile_fp8", "all_fp8", "no_t5", "low_memory", "low_memory_no_t5",
}  # fmt: skip


def run_harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HARNESS), *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    output = tmp_path_factory.mktemp("bench") / "gpu.json"
    done = run_harness(*TINY_CPU, "--output", str(output))
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(output.read_text())
    return done, report


def test_report_is_labelled_not_a_gpu_measurement(tiny_run: tuple[Any, dict[str, Any]]) -> None:
    done, report = tiny_run

    assert report["measured_on_gpu"] is False
    assert "NOT A GPU" in report["device"]
    assert "NOT SD3.5 Medium's compute" in report["weights"]
    assert report["goal"] == "not measured: no GPU"
    assert report["peak_tflops"] is None
    assert "NOT A GPU" in done.stdout


def test_report_says_what_ran_and_how(tiny_run: tuple[Any, dict[str, Any]]) -> None:
    _, report = tiny_run

    assert report["command"].startswith("python infra/bench/gpu.py --preset tiny --device cpu")
    assert set(report["versions"]) >= {"torch", "diffusers", "transformers"}
    assert (report["size"], report["steps"], report["guidance"], report["dtype"]) == (64, 2, 4.5, "float32")
    # 77 CLIP tokens + 256 (zero) T5 tokens, as the real model sees.
    assert report["text_tokens"] == 333
    assert report["flops_per_step"] > 0


def test_every_variant_is_listed_and_each_measured_one_has_positive_stage_times(
    tiny_run: tuple[Any, dict[str, Any]],
) -> None:
    _, report = tiny_run
    rows = {row["variant"]: row for row in report["variants"]}

    assert set(rows) == ALL_VARIANTS
    measured = [row for row in rows.values() if row["status"] == "ok"]
    assert {row["variant"] for row in measured} == ALL_VARIANTS - {
        "cuda_graphs", "low_memory", "low_memory_no_t5", "fp8", "compile_fp8", "all_fp8"
    }  # fmt: skip
    for row in measured:
        for stage in ("text_s", "denoise_s", "decode_s", "total_s", "step_s"):
            assert row[stage] > 0, (row["variant"], stage)
        assert row["total_s"] == pytest.approx(
            row["text_s"] + row["denoise_s"] + row["decode_s"], rel=0.5
        )  # medians of sums vs sums of medians
        assert row["achieved_tflops"] > 0
        assert row["peak_fraction"] is None and row["peak_memory_gib"] is None  # no GPU, no peak


def test_levers_keep_the_pixels_close_to_eager(tiny_run: tuple[Any, dict[str, Any]]) -> None:
    _, report = tiny_run
    rows = {row["variant"]: row for row in report["variants"]}

    assert rows["eager"]["pixel_difference_vs_eager"] is None  # the reference itself
    for name in ("fuse_qkv", "attention_cudnn", "vae_channels_last", "compile", "all"):
        assert rows[name]["pixel_difference_vs_eager"]["max"] <= 2, name


def test_unavailable_variants_say_why(tiny_run: tuple[Any, dict[str, Any]]) -> None:
    _, report = tiny_run
    rows = {row["variant"]: row for row in report["variants"]}

    for name in ("cuda_graphs", "low_memory", "low_memory_no_t5"):
        assert (rows[name]["status"], rows[name]["reason"]) == ("skipped", "needs a CUDA device")
    for name in ("fp8", "compile_fp8", "all_fp8"):
        assert rows[name]["status"] == "skipped"
        assert "torchao" in rows[name]["reason"]


def test_batches_report_images_per_second(tiny_run: tuple[Any, dict[str, Any]]) -> None:
    done, report = tiny_run

    assert [(row["batch"], row["size"]) for row in report["batches"]] == [(1, 64), (2, 64)]
    for row in report["batches"]:
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["total_s"])
        assert 0 < row["step_s"] * 2 < row["total_s"]
        assert row["outside_steps_s"] == pytest.approx(row["total_s"] - 2 * row["step_s"])
    assert "| variant | text s | denoise s |" in done.stdout
    assert "| batch | size | total s | step ms | outside steps s | images/s |" in done.stdout


def test_without_a_gpu_it_refuses_to_measure(tmp_path: Path) -> None:
    output = tmp_path / "gpu.json"

    # No device visible, even on a machine with a GPU.
    done = run_harness("--output", str(output), env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})

    assert done.returncode == 2
    assert "no CUDA device here, so nothing is measured" in done.stderr
    assert not output.exists()
