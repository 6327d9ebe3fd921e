"""The speed levers (worker/pipelines/fast_path.py) on the tiny pipeline on a CPU, and the full-size random
architecture of `make bench-gpu` checked on the `meta` device (no memory)."""

import copy
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from PIL import Image

from models.inputs import RenderRequest
from models.settings import Settings
from worker.pipelines import random_sd35
from worker.pipelines.fast_path import (
    FusedQKNormJointAttnProcessor,
    KernelChoiceProcessor,
    SpeedLevers,
    apply_speed_levers,
    levers_from_settings,
    levers_tag,
    validate_levers,
    warm_up,
)
from worker.pipelines.image_to_image import image_to_image, img2img_pipeline
from worker.pipelines.text_to_image import text_to_image
from worker.pipelines.tiny import build_tiny_pipeline

CPU = torch.device("cpu")


def render(pipe: StableDiffusion3Pipeline, seed: int = 7) -> np.ndarray:
    with torch.inference_mode():
        images = pipe(
            prompt="a red fox in the snow",
            negative_prompt="blurry",
            height=64,
            width=64,
            num_inference_steps=2,
            guidance_scale=4.5,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        ).images
    return np.asarray(images[0])


@pytest.fixture(scope="module")
def eager_pixels() -> np.ndarray:
    return render(build_tiny_pipeline())


def test_defaults_change_nothing(eager_pixels: np.ndarray) -> None:
    pipe = build_tiny_pipeline()
    processors = {name: type(p) for name, p in pipe.transformer.attn_processors.items()}

    apply_speed_levers(pipe, levers_from_settings(Settings()))

    # Every lever off; only where the compile cache would go is set.
    assert levers_from_settings(Settings()) == SpeedLevers(compile_cache_dir="var/compile-cache")
    assert {name: type(p) for name, p in pipe.transformer.attn_processors.items()} == processors
    assert np.array_equal(render(pipe), eager_pixels)
    assert levers_tag(SpeedLevers()) == ""


def test_fused_qkv_keeps_the_pixels_within_rounding(eager_pixels: np.ndarray) -> None:
    pipe = build_tiny_pipeline()

    apply_speed_levers(pipe, SpeedLevers(fuse_qkv=True))

    attention = pipe.transformer.transformer_blocks[0].attn
    assert isinstance(attention.processor, FusedQKNormJointAttnProcessor)
    assert attention.to_q is None and attention.to_qkv is not None  # the unfused copies are freed
    assert np.abs(render(pipe) - eager_pixels).max() < 1e-4


def test_fused_qkv_keeps_qk_norm_and_image_only_attention() -> None:
    # Dual-attention blocks (SD3.5's first 13) have attn2 with no text stream; diffusers' own fused processor
    # fails on them and skips the RMS qk-norm. Ours must give the unfused output.
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=3, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=32, dual_attention_layers=(0, 1), qk_norm="rms_norm",
    ).eval()  # fmt: skip
    inputs = {
        "hidden_states": torch.randn(2, 16, 16, 16),
        "encoder_hidden_states": torch.randn(2, 20, 32),
        "pooled_projections": torch.randn(2, 64),
        "timestep": torch.tensor([500.0, 500.0]),
    }
    pipe = StableDiffusion3Pipeline(**{**build_tiny_pipeline().components, "transformer": copy.deepcopy(transformer)})

    apply_speed_levers(pipe, SpeedLevers(fuse_qkv=True))

    with torch.inference_mode():
        expected = transformer(**inputs).sample
        fused = pipe.transformer(**inputs).sample
    assert pipe.transformer.transformer_blocks[0].attn2.to_qkv is not None
    assert torch.allclose(fused, expected, atol=1e-5)


def test_attention_kernel_wraps_every_processor_and_falls_back_on_a_cpu(eager_pixels: np.ndarray) -> None:
    pipe = build_tiny_pipeline()

    apply_speed_levers(pipe, SpeedLevers(attention_kernel="cudnn"))

    processors = pipe.transformer.attn_processors.values()
    assert processors and all(isinstance(p, KernelChoiceProcessor) for p in processors)
    assert np.abs(render(pipe) - eager_pixels).max() < 1e-4


def test_all_safe_levers_together_compile_without_graph_breaks(eager_pixels: np.ndarray) -> None:
    pipe = build_tiny_pipeline()
    levers = SpeedLevers(
        fuse_qkv=True, attention_kernel="cudnn", vae_channels_last=True, compile_blocks=True, compile_backend="eager"
    )
    torch._dynamo.reset()

    apply_speed_levers(pipe, levers)  # compile(fullgraph=True): a graph break raises at the first render

    assert np.abs(render(pipe) - eager_pixels).max() < 1e-4
    assert pipe.transformer._repeated_blocks == ["JointTransformerBlock"]
    assert (
        levers_tag(levers) == "+fuse_qkv+attention_kernel=cudnn+vae_channels_last+compile_blocks+compile_backend=eager"
    )


def three_block_kinds_pipeline() -> StableDiffusion3Pipeline:
    """The tiny pipeline with a transformer that has SD3.5 Medium's three block kinds (dual-attention, plain,
    last), which share one compiled forward and so one recompile limit."""
    pipe = build_tiny_pipeline()
    config = pipe.transformer.config
    torch.manual_seed(0)
    pipe.transformer = SD3Transformer2DModel(
        **{key: config[key] for key in ("sample_size", "patch_size", "in_channels", "out_channels", "qk_norm")},
        **{key: config[key] for key in ("joint_attention_dim", "pooled_projection_dim", "pos_embed_max_size")},
        num_layers=3,
        dual_attention_layers=(0,),
        attention_head_dim=8,
        num_attention_heads=1,
        caption_projection_dim=8,
    ).eval()
    return pipe


def job(width: int, height: int, images: int, guidance: float) -> RenderRequest:
    return RenderRequest(
        prompt="a fox", negative_prompt="", width=width, height=height, steps=2, guidance_scale=guidance,
        seeds=tuple(range(images)), output_format="png", output_quality=90, strength=0.6,
    )  # fmt: skip


def test_after_the_warm_up_no_job_compiles_or_hits_the_recompile_limit() -> None:
    pipe = three_block_kinds_pipeline()
    torch._dynamo.reset()
    apply_speed_levers(pipe, SpeedLevers(compile_blocks=True, compile_backend="eager"))

    warm_up(pipe)  # 3 renders x 3 block kinds: past dynamo's default limit of 8 graphs per code object
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for width, height, images, guidance in [
        (512, 768, 1, 4.5),
        (1024, 1024, 4, 4.5),
        (256, 256, 1, 0.0),
        (384, 256, 3, 0.0),
    ]:
        text_to_image(pipe, job(width, height, images, guidance), lambda done, total: None)
    init_image = Image.new("RGB", (640, 384), "orange")
    image_to_image(img2img_pipeline(pipe), job(640, 384, 2, 4.5), init_image, lambda done, total: None)

    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # every job reused a warm graph


def test_compile_cache_dir_is_created_and_given_to_inductor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test, whatever apply_speed_levers writes.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    cache = tmp_path / "inductor"
    torch._dynamo.reset()

    apply_speed_levers(
        build_tiny_pipeline(), SpeedLevers(compile_blocks=True, compile_backend="eager", compile_cache_dir=str(cache))
    )

    assert cache.is_dir()
    assert torch._inductor.runtime.cache_dir_utils.cache_dir() == str(cache)


def test_low_memory_without_t5_runs_on_a_cpu() -> None:
    pipe = build_tiny_pipeline()

    apply_speed_levers(pipe, SpeedLevers(cpu_offload=True, drop_t5=True))  # offload: a no-op on a CPU

    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert render(pipe).shape == (64, 64, 3)


def test_fp8_without_torchao_is_a_clear_error_and_changes_nothing() -> None:
    assert importlib.util.find_spec("torchao") is None, "this test is about a machine without torchao"
    pipe = build_tiny_pipeline()

    with pytest.raises(ValueError, match="FARM_FP8=true needs torchao, which is not installed"):
        apply_speed_levers(pipe, SpeedLevers(fp8=True, fuse_qkv=True))

    assert pipe.transformer.transformer_blocks[0].attn.to_q is not None  # validated before any change


def test_unknown_compile_mode_is_refused() -> None:
    levers = dataclasses.replace(SpeedLevers(), compile_mode="fastest")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="compile mode 'fastest' is not one of default, max-autotune"):
        validate_levers(levers, CPU)


def test_settings_reach_the_levers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "FARM_FUSE_QKV": "true", "FARM_ATTENTION_KERNEL": "cudnn", "FARM_VAE_CHANNELS_LAST": "true",
        "FARM_COMPILE_TRANSFORMER": "true", "FARM_COMPILE_MODE": "max-autotune", "FARM_COMPILE_CACHE_DIR": "/cache",
        "FARM_FP8": "true", "FARM_LOW_MEMORY": "true", "FARM_DROP_T5": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    assert levers_from_settings(Settings()) == SpeedLevers(
        fuse_qkv=True, attention_kernel="cudnn", vae_channels_last=True, compile_blocks=True,
        compile_mode="max-autotune", compile_cache_dir="/cache", fp8=True, cpu_offload=True, drop_t5=True,
    )  # fmt: skip


# --- the full-size random architecture of `make bench-gpu`, on the meta device --------------------------------


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters only: not the pos_embed buffer


def test_full_size_transformer_is_sd35_medium() -> None:
    with torch.device("meta"):
        transformer = random_sd35.transformer()

    assert parameters(transformer) == pytest.approx(2.2432e9, abs=0.001e9)
    assert transformer.pos_embed.pos_embed.shape == (1, 384 * 384, 1536)  # the 226.5 M buffer, not counted
    assert len(transformer.transformer_blocks) == 24
    assert [block.attn2 is not None for block in transformer.transformer_blocks] == [True] * 13 + [False] * 11


def test_full_size_encoders_and_vae_are_sd35_medium() -> None:
    tokenizer = random_sd35.clip_tokenizer("!")
    with torch.device("meta"):
        counts = {
            "clip_l": parameters(random_sd35.clip_text_encoder(random_sd35.CLIP_L_CONFIG, tokenizer)),
            "clip_g": parameters(random_sd35.clip_text_encoder(random_sd35.CLIP_G_CONFIG, tokenizer)),
            "t5": parameters(random_sd35.t5_encoder()),
            "vae": parameters(random_sd35.vae()),
        }  # fmt: skip

    assert counts == {
        "clip_l": pytest.approx(0.1237e9, abs=0.001e9),
        "clip_g": pytest.approx(0.6947e9, abs=0.001e9),
        "t5": pytest.approx(4.7623e9, abs=0.001e9),
        "vae": pytest.approx(83.8e6, abs=0.1e6),
    }


def test_full_size_step_is_22_5_tflop_and_text_is_333_tokens() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    tokenizer_3 = random_sd35.t5_tokenizer()
    t5_ids = tokenizer_3("a red fox", padding="max_length", max_length=256, truncation=True, return_tensors="pt")
    clip_ids = random_sd35.clip_tokenizer("!")("a red fox", padding="max_length", max_length=77, return_tensors="pt")
    with torch.device("meta"):
        transformer = random_sd35.transformer()
        with FlopCounterMode(display=False) as counter:
            transformer(
                hidden_states=torch.zeros(2, 16, 128, 128),  # CFG batch, 1024x1024 latents
                encoder_hidden_states=torch.zeros(2, 77 + 256, 4096),
                pooled_projections=torch.zeros(2, 2048),
                timestep=torch.zeros(2),
            )

    assert t5_ids.input_ids.shape == (1, 256) and clip_ids.input_ids.shape == (1, 77)
    assert t5_ids.input_ids[0, :4].tolist() != [0, 0, 0, 0]  # the prompt is tokenised, not just padding
    assert counter.get_total_flops() / 1e12 == pytest.approx(22.50, abs=0.01)
