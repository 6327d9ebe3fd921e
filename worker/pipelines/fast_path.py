"""The speed levers of issue 9, applied once to a loaded SD3.5 pipeline: `apply_speed_levers(pipe, levers)`.

Each lever is a field of `SpeedLevers` (from the FARM_ settings in the worker, chosen per variant by
`make bench-gpu`). Levers that change pixels or have not been measured on a GPU are off by default
(models/settings.py); with all of them off the pipeline is untouched. On a CPU every lever is a no-op or safe,
except FP8, which refuses to start without torchao and a GPU that has FP8 matmuls.
"""

import dataclasses
import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch

# Defining modules: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.inputs import RenderRequest
from models.settings import Settings
from worker.pipelines.text_to_image import text_to_image

log = logging.getLogger("farm.worker")

AttentionKernel = Literal["sdpa", "cudnn"]
CompileMode = Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"]
COMPILE_MODES: tuple[CompileMode, ...] = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
# Dynamo keeps at most `recompile_limit` graphs (8 by default) per code object, and with fullgraph=True going
# past it fails the job. The 24 blocks share one forward across three block kinds (dual-attention, plain, last),
# and each new kind of call (the first size; then any other size or batch; then CFG off) adds a graph per kind.
BLOCK_GRAPH_LIMIT = 64
# The worker's warm-up renders, (width, height, images, CFG), so no job pays a compile. The first compiles graphs
# specialised to the default job. The second changes size and batch at once: torch.compile recompiles with those
# dimensions dynamic ("automatic dynamic shapes"), and every later size and image count reuses that. The third
# turns CFG off: a batch of 1, which dynamic shapes specialise.
WARM_UP_RENDERS = ((1024, 1024, 1, 4.5), (832, 1216, 2, 4.5), (1024, 1024, 1, 1.0))
FP8_MIN_CAPABILITY = (8, 9)  # Ada and Hopper have FP8 tensor cores


@dataclasses.dataclass(frozen=True)
class SpeedLevers:
    fuse_qkv: bool = False
    attention_kernel: AttentionKernel = "sdpa"
    vae_channels_last: bool = False
    compile_blocks: bool = False
    compile_mode: CompileMode = "default"
    compile_cache_dir: str = ""
    # "eager" traces the blocks with fullgraph=True (proves there is no graph break) without generating code:
    # for plumbing checks on a CPU. The worker always uses inductor.
    compile_backend: str = "inductor"
    fp8: bool = False
    cpu_offload: bool = False
    drop_t5: bool = False


def levers_from_settings(settings: Settings) -> SpeedLevers:
    return SpeedLevers(
        fuse_qkv=settings.fuse_qkv,
        attention_kernel=settings.attention_kernel,
        vae_channels_last=settings.vae_channels_last,
        compile_blocks=settings.compile_transformer,
        compile_mode=settings.compile_mode,
        compile_cache_dir=settings.compile_cache_dir,
        fp8=settings.fp8,
        cpu_offload=settings.low_memory,
        drop_t5=settings.drop_t5,
    )


class FusedQKNormJointAttnProcessor:
    """Joint attention with one fused QKV matmul per stream, keeping SD3.5's RMS qk-norm.

    Not diffusers' `fuse_qkv_projections()`: its FusedJointAttnProcessor2_0 skips norm_q/norm_k (SD3.5's
    qk_norm="rms_norm": other pixels) and fails on the image-only `attn2` of the first 13 blocks.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        batch_size, image_tokens = hidden_states.shape[:2]
        query, key, value = _heads(attn, attn.to_qkv(hidden_states), attn.norm_q, attn.norm_k)
        if encoder_hidden_states is not None:
            text_q, text_k, text_v = _heads(
                attn, attn.to_added_qkv(encoder_hidden_states), attn.norm_added_q, attn.norm_added_k
            )
            # Image tokens first, then text: the order JointAttnProcessor2_0 uses.
            query, key, value = (
                torch.cat([query, text_q], dim=2),
                torch.cat([key, text_k], dim=2),
                torch.cat([value, text_v], dim=2),
            )
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * query.shape[-1]).to(query.dtype)
        image_out: torch.Tensor = attn.to_out[1](attn.to_out[0](out[:, :image_tokens]))
        if encoder_hidden_states is None:
            return image_out
        text_out = out[:, image_tokens:]
        return image_out, text_out if attn.context_pre_only else attn.to_add_out(text_out)


def _heads(
    attn: Attention, qkv: torch.Tensor, norm_q: torch.nn.Module | None, norm_k: torch.nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, N, 3 x inner] -> query, key, value as [B, heads, N, head_dim], query and key normalised."""
    batch_size = qkv.shape[0]
    query, key, value = (
        t.view(batch_size, -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1)
    )
    return (norm_q(query) if norm_q else query), (norm_k(key) if norm_k else key), value


class KernelChoiceProcessor:
    """Runs another attention processor with SDPA restricted to `backends`, first usable wins (PyTorch
    falls back along the list: flash or math on a CPU). SD3 ignores diffusers' set_attention_backend."""

    def __init__(self, inner: Any, backends: list[SDPBackend]) -> None:
        self.inner = inner
        self.backends = backends

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        with sdpa_kernel(self.backends, set_priority=True):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


KERNEL_BACKENDS: dict[AttentionKernel, list[SDPBackend]] = {
    "sdpa": [],  # PyTorch's own choice: no wrapper
    "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
}


def validate_levers(levers: SpeedLevers, device: torch.device) -> None:
    """Fix-it errors before anything is changed."""
    if levers.compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {levers.compile_mode!r} is not one of {', '.join(COMPILE_MODES)}.")
    if levers.fp8:
        if importlib.util.find_spec("torchao") is None:
            raise ValueError(
                "FARM_FP8=true needs torchao, which is not installed: install the torchao release built for this "
                "torch (GPU worker image only), or set FARM_FP8=false."
            )
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
            raise ValueError(
                f"FARM_FP8=true needs a GPU with FP8 matmuls (compute capability 8.9+: Ada, Hopper), not {device}. "
                "Set FARM_FP8=false."
            )
        if levers.cpu_offload:
            raise ValueError("FARM_FP8 with FARM_LOW_MEMORY is not measured: set one of them to false.")


def levers_tag(levers: SpeedLevers) -> str:
    """What to append to a build id: the levers that can change pixels, e.g. "+fuse_qkv+compile_blocks"."""
    changed = [
        f"{field.name}={value}" if isinstance(value, str) else field.name
        for field in dataclasses.fields(levers)
        if field.name not in ("compile_cache_dir", "cpu_offload")
        and (value := getattr(levers, field.name)) != field.default
    ]
    return "".join(f"+{name}" for name in changed)


def apply_speed_levers(pipe: StableDiffusion3Pipeline, levers: SpeedLevers, device: torch.device | None = None) -> None:
    """Apply `levers` to `pipe` in place, for running on `device` (default: where its transformer is; pass the
    GPU when the modules are still on the CPU for `cpu_offload`). Call once, before building pipelines that
    share its modules."""
    device = device or pipe.transformer.device
    # 1. Validate everything first: a bad combination fails before any module has changed.
    validate_levers(levers, device)

    # 2. Drop T5: its embeddings become zeros; the transformer still sees 333 text tokens (same compute).
    if levers.drop_t5:
        pipe.text_encoder_3 = None
        pipe.tokenizer_3 = None

    # 3. Fused QKV: one matmul per stream instead of three (same math, float rounding aside).
    if levers.fuse_qkv:
        _fuse_qkv(pipe.transformer)

    # 4. Attention kernel, by wrapping each block's processor.
    if backends := KERNEL_BACKENDS[levers.attention_kernel]:
        processors = pipe.transformer.attn_processors
        pipe.transformer.set_attn_processor(
            {name: KernelChoiceProcessor(p, backends) for name, p in processors.items()}
        )

    # 5. VAE in channels-last: faster convolutions on tensor cores.
    if levers.vae_channels_last:
        pipe.vae.to(memory_format=torch.channels_last)

    # 6. FP8 weights and activations for the blocks' linear layers (validated: torchao and an FP8 GPU).
    if levers.fp8:
        quantization = importlib.import_module("torchao.quantization")
        config = quantization.Float8DynamicActivationFloat8WeightConfig(granularity=quantization.PerRow())
        quantization.quantize_(
            pipe.transformer,
            config,
            filter_fn=lambda module, fqn: isinstance(module, torch.nn.Linear) and fqn.startswith("transformer_blocks."),
        )

    # 7. Regional compile: the 24 blocks share a few graphs (dual-attention, plain, last), each compiled once
    #    rather than the whole model; fullgraph=True turns any graph break into an error at warm-up.
    if levers.compile_blocks:
        if levers.compile_cache_dir:
            # Inductor's FX-graph and Triton caches: a restarted worker reuses the compiled kernels.
            cache_dir = Path(levers.compile_cache_dir).expanduser().resolve()
            cache_dir.mkdir(parents=True, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
            os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, BLOCK_GRAPH_LIMIT)
        pipe.transformer._repeated_blocks = ["JointTransformerBlock"]  # empty in diffusers for SD3
        options: dict[str, Any] = {"fullgraph": True, "backend": levers.compile_backend}
        if levers.compile_backend == "inductor":
            options["mode"] = levers.compile_mode
        pipe.transformer.compile_repeated_blocks(**options)

    # 8. Low memory: each model on the GPU only while it runs (last: it moves every module). Nothing to
    #    offload on a CPU.
    if levers.cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    log.info("speed levers applied on %s: %s", device, levers)


def _fuse_qkv(transformer: SD3Transformer2DModel) -> None:
    for module in transformer.modules():
        if isinstance(module, Attention):
            module.fuse_projections(fuse=True)  # type: ignore[no-untyped-call]
            # The unfused copies are never used again: free them (~0.9 GB in bf16 for SD3.5 Medium).
            for name in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
                if getattr(module, name, None) is not None:
                    setattr(module, name, None)
    # diffusers annotates its own processor classes only; any callable with their signature works.
    transformer.set_attn_processor(FusedQKNormJointAttnProcessor())  # type: ignore[arg-type]


def warm_up(pipe: StableDiffusion3Pipeline) -> None:
    """Short renders (2 steps) of WARM_UP_RENDERS, so compile time is paid at worker start, not by a user."""
    for width, height, images, guidance in WARM_UP_RENDERS:
        request = RenderRequest(
            prompt="warm-up",
            negative_prompt="",
            width=width,
            height=height,
            steps=2,
            guidance_scale=guidance,
            seeds=tuple(range(images)),
            output_format="png",
            output_quality=90,
        )
        text_to_image(pipe, request, lambda done, total: None)
