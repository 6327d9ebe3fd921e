"""`make bench-gpu`: SD3.5 Medium on one GPU, per stage, per speed lever (issue 9: <= 1.6 s per image on an H100).

One image at 1024x1024, 40 steps, CFG 4.5, bf16, by default. For each variant (a set of speed levers from
worker/pipelines/fast_path.py, applied to fresh copies of the transformer and VAE):

1. warm-up renders (compile time, for the compiled variants, is reported as warm-up);
2. timed renders, stage by stage as the pipeline runs them: text encoding (CLIP-L, CLIP-G, T5, prompt and
   negative), denoising (one batched-CFG transformer forward per step; per-step times from CUDA events in the
   step callback), VAE decode + conversion to PIL; medians over the repeats;
3. achieved TFLOP/s = FLOPs per step (counted by torch.utils.flop_counter on the transformer at this shape,
   22.50 TFLOP at 1024x1024 with CFG) x steps / denoising time, and its fraction of the GPU's dense bf16
   peak; peak GPU memory (torch.cuda.max_memory_allocated); the pixel difference from the eager variant on
   the same seed.

Then images per second for batch sizes at 512x512, each image a job of its own prompt and seed in one pipeline
call, as a batching worker runs them (FARM_BATCH_MAX_IMAGES). Without the real weights (FARM_MODEL_PATH or --model-path,
local only) it builds the full-size architecture with random weights: the same compute, meaningless pixels,
and says so. `--preset tiny --device cpu` runs the plumbing on a CPU in seconds: NOT a GPU measurement, and
labelled so. Writes a Markdown table to stdout and JSON to var/bench/gpu.json. A benchmark: it asserts nothing.
"""

import argparse
import copy
import dataclasses
import gc
import json
import platform
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]
sys.path[:0] = [str(REPO_ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline  # noqa: E402
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from models.inputs import RenderRequest  # noqa: E402
from models.settings import get_settings  # noqa: E402
from worker.pipelines.fast_path import SpeedLevers, apply_speed_levers, validate_levers  # noqa: E402
from worker.pipelines.shared_steps import seed_generators  # noqa: E402
from worker.pipelines.text_to_image import text_to_image_batch  # noqa: E402

PROMPT = "a red fox in the snow, photograph, golden hour"
NEGATIVE_PROMPT = "blurry"
T5_TOKENS = 256  # the pipeline's max_sequence_length default: 77 CLIP + 256 T5 = 333 text tokens
# Dense bf16 tensor-core peak (TFLOP/s, no sparsity), from the vendors' data sheets; first match wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM: "NVIDIA H100 80GB HBM3"
    ("H200", 989.4),
    ("H800", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("RTX 4090", 165.2),
    ("L4", 121.0),
    ("A10G", 70.0),
)
# Speed levers of each variant; "all" is every lever that keeps the model's precision, compiled in the default
# mode (max-autotune is its own variant: minutes of tuning at start for what it measures).
ALL_LEVERS = SpeedLevers(fuse_qkv=True, attention_kernel="cudnn", vae_channels_last=True, compile_blocks=True)
VARIANTS: dict[str, SpeedLevers] = {
    "eager": SpeedLevers(),
    "fuse_qkv": SpeedLevers(fuse_qkv=True),
    "attention_cudnn": SpeedLevers(attention_kernel="cudnn"),
    "vae_channels_last": SpeedLevers(vae_channels_last=True),
    "compile": SpeedLevers(compile_blocks=True),
    "compile_max_autotune": SpeedLevers(compile_blocks=True, compile_mode="max-autotune-no-cudagraphs"),
    "cuda_graphs": SpeedLevers(compile_blocks=True, compile_mode="reduce-overhead"),
    "all": ALL_LEVERS,
    "fp8": SpeedLevers(fp8=True),
    "compile_fp8": SpeedLevers(compile_blocks=True, fp8=True),
    "all_fp8": dataclasses.replace(ALL_LEVERS, fp8=True),
    "no_t5": SpeedLevers(drop_t5=True),
    "low_memory": SpeedLevers(cpu_offload=True),
    "low_memory_no_t5": SpeedLevers(cpu_offload=True, drop_t5=True),
}
NEEDS_CUDA = {"cuda_graphs", "low_memory", "low_memory_no_t5"}  # CUDA graphs, offloading to the CPU


@dataclasses.dataclass
class Render:
    """One timed render: seconds per stage, per step, and the images as uint8 arrays."""

    text_s: float
    denoise_s: float
    decode_s: float
    step_s: list[float]
    images: list[np.ndarray]

    @property
    def total_s(self) -> float:
        return self.text_s + self.denoise_s + self.decode_s


class Clock:
    """Marks on the device's timeline: CUDA events (no synchronisation while the pipeline runs), or
    perf_counter on a CPU, where the work is done when the call returns."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def on_step(self, done: int, total: int) -> None:
        """A mark after each denoising step, as the worker's step callback."""
        self.mark()

    def seconds(self, start: int, end: int) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return float(self.marks[start].elapsed_time(self.marks[end])) / 1000
        return float(self.marks[end] - self.marks[start])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--preset", choices=("sd3.5-medium", "tiny"), default="sd3.5-medium")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model-path", default=None, help="local weights (default: FARM_MODEL_PATH)")
    parser.add_argument("--size", type=int, default=1024, help="width = height, pixels")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--guidance", type=float, default=4.5)
    parser.add_argument("--warmups", type=int, default=1, help="untimed renders per variant")
    parser.add_argument("--repeats", type=int, default=3, help="timed renders per variant (medians reported)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--batch-sizes", default="1,2,4,8", help="images per batch for images/s; empty: none")
    parser.add_argument("--batch-size-px", type=int, default=512, help="width = height of the batch runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, if not in the table")
    parser.add_argument(
        "--compile-backend", default="inductor", help="eager: trace only (graph-break check), for CPU plumbing runs"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "var" / "bench" / "gpu.json")
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: use {', '.join(VARIANTS)}")
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (the first step's time includes the set-up), not {args.steps}")
    return args


def load_pipeline(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[Any, str]:
    """The pipeline and a label saying what its weights are."""
    if args.preset == "tiny":
        from worker.pipelines.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline().to(device, dtype)
        return pipe, "tiny preset (random weights, a few layers): NOT SD3.5 Medium's compute, pipeline plumbing only"
    from worker.pipelines.sd35 import find_weights

    model_path = args.model_path or get_settings().model_path
    try:
        folder = find_weights(model_path)
    except RuntimeError as missing:
        if device.type != "cuda":
            raise SystemExit(
                "bench-gpu: no SD3.5 weights, and the full-size random model needs ~32 GB of RAM in float32 on a "
                "CPU. Use --preset tiny for a CPU plumbing check."
            ) from missing
        print(f"real weights not found ({str(missing).split('.')[0]}): building the full-size architecture")
        from worker.pipelines.random_sd35 import build_random_sd35_medium

        pipe = build_random_sd35_medium(str(device), dtype)
        return pipe, "random weights, full-size SD3.5 Medium architecture: same compute, pixels meaningless"
    pipe = StableDiffusion3Pipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, f"real SD3.5 Medium weights from {folder}"


def step_flops(pipe: Any, size: int, batch: int) -> float:
    """FLOPs of one denoising step (one transformer forward over the CFG batch), counted on the `meta`
    device: no memory, no compute."""
    config = pipe.transformer.config
    with torch.device("meta"):
        model = type(pipe.transformer).from_config(config)
        latent = size // pipe.vae_scale_factor
        inputs = {
            "hidden_states": torch.zeros(batch, config.in_channels, latent, latent),
            "encoder_hidden_states": torch.zeros(
                batch, pipe.tokenizer_max_length + T5_TOKENS, config.joint_attention_dim
            ),
            "pooled_projections": torch.zeros(batch, config.pooled_projection_dim),
            "timestep": torch.zeros(batch),
        }
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
    return float(counter.get_total_flops())


def variant_pipeline(base: Any, templates: dict[str, torch.nn.Module], device: torch.device) -> Any:
    """A pipeline with fresh copies of the transformer and VAE (the modules the levers change) on `device`,
    the text encoders shared with `base`, and its own scheduler."""
    copies = {name: copy.deepcopy(module).to(device) for name, module in templates.items()}
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(base.scheduler.config)
    pipe = StableDiffusion3Pipeline(**{**base.components, **copies, "scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: Any, size: int, steps: int, guidance: float, seeds: list[int], device: torch.device) -> Render:
    """Text encoding, denoising and decoding as StableDiffusion3Pipeline.__call__ runs them, with a mark
    between stages and after each step."""
    clock = Clock(device)
    clock.mark()
    with torch.inference_mode():
        embeds = pipe.encode_prompt(
            prompt=PROMPT,
            prompt_2=None,
            prompt_3=None,
            negative_prompt=NEGATIVE_PROMPT,
            do_classifier_free_guidance=guidance > 1,
            num_images_per_prompt=len(seeds),
            max_sequence_length=T5_TOKENS,
        )
        clock.mark()

        def on_step_end(_pipe: Any, _i: int, _t: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
            clock.mark()
            return {}

        prompt_embeds, negative_embeds, pooled, negative_pooled = embeds
        latents = pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=negative_pooled,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=seed_generators(tuple(seeds)),  # as the worker seeds them
            callback_on_step_end=on_step_end,
            output_type="latent",
        ).images
        clock.mark()
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(latents, return_dict=False)[0]
        images = pipe.image_processor.postprocess(decoded, output_type="pil")
        clock.mark()
    last = len(clock.marks) - 1
    step_s = [clock.seconds(i, i + 1) for i in range(1, last - 2)]  # marks: start, text, each step, denoise, decode
    return Render(
        text_s=clock.seconds(0, 1),
        denoise_s=clock.seconds(1, last - 1),
        decode_s=clock.seconds(last - 1, last),
        step_s=step_s,
        images=[np.asarray(image.convert("RGB")) for image in images],
    )


def median_render(renders: list[Render]) -> dict[str, float]:
    """Per-stage medians; the step time is the median step of all timed renders (the first step of each
    includes the pipeline's set-up: latents, timesteps)."""
    return {
        "text_s": statistics.median(r.text_s for r in renders),
        "denoise_s": statistics.median(r.denoise_s for r in renders),
        "decode_s": statistics.median(r.decode_s for r in renders),
        "total_s": statistics.median(r.total_s for r in renders),
        "step_s": statistics.median(s for r in renders for s in r.step_s),
    }


def timed(
    pipe: Any, args: argparse.Namespace, device: torch.device, size: int, seeds: list[int]
) -> tuple[float, list[Render], float | None]:
    """(warm-up seconds, timed renders, peak GPU memory in GiB during the timed renders or None on a CPU)."""
    started = time.perf_counter()
    for _ in range(args.warmups):
        render(pipe, size, args.steps, args.guidance, seeds, device)
    warmup_s = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    renders = [render(pipe, size, args.steps, args.guidance, seeds, device) for _ in range(args.repeats)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return warmup_s, renders, peak


def run_variant(
    name: str,
    base: Any,
    templates: dict[str, torch.nn.Module],
    args: argparse.Namespace,
    device: torch.device,
    reference: list[np.ndarray] | None,
) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    levers = dataclasses.replace(VARIANTS[name], compile_backend=args.compile_backend)
    result: dict[str, Any] = {"variant": name, "levers": dataclasses.asdict(levers)}
    if name in NEEDS_CUDA and device.type != "cuda":
        return result | {"status": "skipped", "reason": "needs a CUDA device"}, None
    try:
        validate_levers(levers, device)
    except ValueError as refused:
        return result | {"status": "skipped", "reason": str(refused)}, None
    torch._dynamo.reset()  # each variant compiles afresh, never hitting the recompile limit of another
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if levers.drop_t5 and base.text_encoder_3 is not None:
        base.text_encoder_3.to("cpu")  # off the GPU, or its 9.5 GB would count in this variant's peak memory
    started = time.perf_counter()
    pipe = variant_pipeline(base, templates, device)
    try:
        apply_speed_levers(pipe, levers, device)
        setup_s = time.perf_counter() - started
        warmup_s, renders, peak = timed(pipe, args, device, args.size, [args.seed])
    except Exception as error:  # a lever that fails on this machine is a result, not the end of the run
        return result | {"status": "failed", "reason": f"{type(error).__name__}: {error}"}, None
    finally:
        pipe.remove_all_hooks()
        del pipe
        # Offloading and dropping T5 moved the shared text encoders to the CPU: bring them back.
        for encoder in (base.text_encoder, base.text_encoder_2, base.text_encoder_3):
            if encoder is not None:
                encoder.to(device)
    images = renders[0].images
    difference = None
    if reference is not None:
        delta = np.abs(images[0].astype(np.int16) - reference[0].astype(np.int16))
        difference = {"max": int(delta.max()), "mean": float(delta.mean())}
    return result | {
        "status": "ok",
        "setup_s": setup_s,
        "warmup_s": warmup_s,
        **median_render(renders),
        "peak_memory_gib": peak,
        "pixel_difference_vs_eager": difference,
    }, images


def run_batches(
    base: Any, templates: dict[str, torch.nn.Module], args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Images per second of the eager pipeline for each batch size at --batch-size-px, rendered as a batching
    worker (FARM_BATCH_MAX_IMAGES) renders queued jobs: one pipeline call, each job with its own prompt and seed."""
    sizes = [int(n) for n in args.batch_sizes.split(",") if n]
    if not sizes:
        return []
    torch._dynamo.reset()
    pipe = variant_pipeline(base, templates, device)
    rows = []
    for batch in sizes:
        jobs = [
            RenderRequest(
                prompt=f"{PROMPT}, number {job}",
                negative_prompt=NEGATIVE_PROMPT,
                width=args.batch_size_px,
                height=args.batch_size_px,
                steps=args.steps,
                guidance_scale=args.guidance,
                seeds=(args.seed + job,),
                output_format="png",
                output_quality=90,
            )
            for job in range(batch)
        ]
        for _ in range(args.warmups):
            text_to_image_batch(pipe, jobs, no_progress)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        totals, steps = [], []
        for _ in range(args.repeats):
            clock = Clock(device)
            clock.mark()
            text_to_image_batch(pipe, jobs, clock.on_step)
            clock.mark()  # PIL images returned: the GPU work is done
            last = len(clock.marks) - 1  # marks: start, each step, end
            totals.append(clock.seconds(0, last))
            steps += [clock.seconds(i, i + 1) for i in range(1, last - 1)]  # the first step includes the set-up
        total, step = statistics.median(totals), statistics.median(steps)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        rows.append(
            {
                "batch": batch,
                "size": args.batch_size_px,
                "total_s": total,
                "step_s": step,
                # Text encoding, set-up and decoding: where a slow batch of 1 spends its time, if not in steps.
                "outside_steps_s": total - step * args.steps,
                "images_per_s": batch / total,
                "peak_memory_gib": peak,
            }
        )
    return rows


def no_progress(done: int, total: int) -> None:
    pass


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "no GPU"
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment in name:
            return tflops, f"table ({fragment})"
    return None, f"{name} not in the table: pass --peak-tflops"


def measured_matmul_tflops(device: torch.device) -> float | None:
    """The GPU's bf16 matrix-product ceiling as measured here: an 8192^3 product, median of 10 after 3 warm-ups
    (random data: zeros run faster)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(a, b)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return float(2 * 8192**3 / statistics.median(times) / 1e12)


def goal(variants: list[dict[str, Any]], args: argparse.Namespace, on_gpu: bool) -> str:
    """Issue 9's goal, judged only on a GPU at its own settings."""
    if not on_gpu:
        return "not measured: no GPU"
    if (args.size, args.steps, args.guidance) != (1024, 40, 4.5):
        return "not judged: the goal is for 1024x1024, 40 steps, CFG 4.5"
    done = [row for row in variants if row["status"] == "ok" and not row["levers"]["cpu_offload"]]
    if not done:
        return "not measured: no variant ran"
    best = min(done, key=lambda row: row["total_s"])
    verdict = "met" if best["total_s"] <= 1.6 else "not met"
    return f"<= 1.6 s per image: {verdict} (best: {best['variant']}, {best['total_s']:.3f} s)"


def markdown(report: dict[str, Any]) -> str:
    def num(value: float | None, digits: int = 3) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        f"{report['date']} · {report['device']} · {report['weights']}",
        f"`{report['command']}` · {report['size']}x{report['size']}, {report['steps']} steps, CFG "
        f"{report['guidance']}, {report['dtype']}; {report['flops_per_step'] / 1e12:.2f} TFLOP per step; peak "
        f"{num(report['peak_tflops'], 1)} TFLOP/s ({report['peak_source']}), measured bf16 matmul ceiling "
        f"{num(report['measured_matmul_tflops'], 1)} TFLOP/s; goal: {report['goal']}",
        "",
        "| variant | text s | denoise s | per step ms | decode s | total s | TFLOP/s | of peak | peak GiB | "
        "warm-up s | Δ px vs eager max / mean |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["variants"]:
        if row["status"] != "ok":
            lines.append(f"| {row['variant']} | {row['status']}: {row['reason']} |||||||||| ")
            continue
        diff = row["pixel_difference_vs_eager"]
        diff_text = "—" if diff is None else f"{diff['max']} / {diff['mean']:.3f}"
        fraction = row["peak_fraction"]
        fraction_text = "—" if fraction is None else f"{fraction:.1%}"
        lines.append(
            f"| {row['variant']} | {num(row['text_s'])} | {num(row['denoise_s'])} | {num(row['step_s'] * 1000, 1)} | "
            f"{num(row['decode_s'])} | **{num(row['total_s'])}** | {num(row['achieved_tflops'], 1)} | "
            f"{fraction_text} | {num(row['peak_memory_gib'], 2)} | {num(row['warmup_s'], 1)} | {diff_text} |"
        )
    if report["batches"]:
        lines += [
            "",
            "| batch | size | total s | step ms | outside steps s | images/s | peak GiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["batches"]:
            lines.append(
                f"| {row['batch']} | {row['size']} | {num(row['total_s'])} | {num(row['step_s'] * 1000, 1)} | "
                f"{num(row['outside_steps_s'])} | {num(row['images_per_s'], 2)} | {num(row['peak_memory_gib'], 2)} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench-gpu: no CUDA device here, so nothing is measured. Run it on a machine with a GPU, or "
            "`--preset tiny --device cpu` to check the harness's plumbing (not a measurement).",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    diffusers_logging.set_verbosity_error()  # not "modules kept in float32: []" on every .to(dtype)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # bf16 matmuls are slow on CPUs
    on_gpu = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if on_gpu else f"cpu ({platform.processor() or 'unknown'})"
    started = time.perf_counter()
    base, weights = load_pipeline(args, device, dtype)
    print(f"loaded in {time.perf_counter() - started:.1f} s: {weights}")
    # Pristine transformer and VAE kept on the CPU; each variant gets its own copies on the device.
    templates: dict[str, torch.nn.Module] = {"transformer": base.transformer.to("cpu"), "vae": base.vae.to("cpu")}
    flops = step_flops(base, args.size, 2 if args.guidance > 1 else 1)
    peak, peak_source = peak_tflops(device, args.peak_tflops)

    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "infra/bench/gpu.py", *argv]),
        "measured_on_gpu": on_gpu,
        "device": device_name if on_gpu else f"{device_name}: NOT A GPU, a plumbing check; no GPU measurement",
        "weights": weights,
        "versions": {name: version(name) for name in ("torch", "diffusers", "transformers")}
        | {"python": platform.python_version(), "cuda": torch.version.cuda},
        "size": args.size,
        "steps": args.steps,
        "guidance": args.guidance,
        "dtype": str(dtype).removeprefix("torch."),
        "seed": args.seed,
        "text_tokens": base.tokenizer_max_length + T5_TOKENS,
        "flops_per_step": flops,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "measured_matmul_tflops": measured_matmul_tflops(device),
        "variants": [],
        "batches": [],
        "goal": goal([], args, on_gpu),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every variant: a run cut short (a time limit, a crashed lever) keeps its results
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    reference = None
    for name in args.variants.split(","):
        row, images = run_variant(name, base, templates, args, device, reference)
        if name == "eager" and images is not None:
            reference = images
        if row["status"] == "ok":
            row["achieved_tflops"] = flops * args.steps / row["denoise_s"] / 1e12
            row["peak_fraction"] = row["achieved_tflops"] / peak if peak else None
        report["variants"].append(row)
        report["goal"] = goal(report["variants"], args, on_gpu)
        save()
        print(f"{name}: {row['status']}" + (f" {row['total_s']:.3f} s" if row["status"] == "ok" else ""), flush=True)
    report["batches"] = run_batches(base, templates, args, device)
    save()
    print(markdown(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
