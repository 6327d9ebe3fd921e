"""A real StableDiffusion3Pipeline with tiny random weights, built in code with no files and no network.

SD3.5 Medium's shape family (patch 2, 16 latent channels, RMS qk-norm, VAE factor 8, 77 CLIP tokens + 256
zero T5 tokens), so it takes the same sizes and runs the same pipeline code as the real model, only narrower.
Weights are seeded: every process builds the same pipeline, so a request gives the same pixels in every
process on the same library versions.
"""

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

# Defining modules, not `from diffusers import ...`: mypy resolves those names to diffusers' dummy objects.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from models.inputs import RenderRequest
from worker.pipelines import OnStep, build_id
from worker.pipelines.image_to_image import image_to_image, img2img_pipeline
from worker.pipelines.text_to_image import text_to_image, text_to_image_batch

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte (CLIP's byte-level BPE alphabet), in CLIP's vocab order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def clip_tokenizer(pad_token: str) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer: 512 byte tokens + 2 specials, no merges; "!" is id 0, as in CLIP."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)} | {s + "</w>": 256 + i for i, s in enumerate(symbols)}
    vocab |= {BOS: len(vocab), EOS: len(vocab) + 1}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        # The pipeline pads CLIP prompts to model_max_length; unset it would be a huge sentinel.
        "model_max_length": 77,
        "pad_token": pad_token,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    return tokenizer


def _clip_text_encoder(tokenizer: CLIPTokenizer, seed: int) -> CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        # Pooling looks up the position of eos_token_id, so it must match the tokenizer.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        hidden_act="gelu",
    )
    return CLIPTextModelWithProjection(config)


def build_tiny_pipeline() -> StableDiffusion3Pipeline:
    """The tiny pipeline, fp32 on CPU, without T5 (its embeddings become zeros of joint_attention_dim)."""
    # Seeds are fixed per module and the global RNG is restored afterwards, so building has no side effect.
    with torch.random.fork_rng(devices=[]):
        tokenizer, tokenizer_2 = clip_tokenizer(pad_token=EOS), clip_tokenizer(pad_token="!")
        text_encoder = _clip_text_encoder(tokenizer, seed=0)
        text_encoder_2 = _clip_text_encoder(tokenizer_2, seed=1)
        torch.manual_seed(2)
        transformer = SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            # One block, one head, no dual attention: on CPU, attention over ~4,400 tokens at 1024x1024
            # costs ~45 ms per head and block each step (CFG batch 2) whatever the head size, so each
            # extra head, block or dual-attention layer adds 1.5-1.8 s to a 40-step image.
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=1,
            joint_attention_dim=96,
            caption_projection_dim=8,  # = heads x head_dim
            pooled_projection_dim=64,  # = both CLIP projections
            # 1536-pixel sides are 96 patches; the real model's 384 would only cost memory here.
            pos_embed_max_size=96,
            dual_attention_layers=(),
            qk_norm="rms_norm",
        )
        torch.manual_seed(3)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            # Few channels, no mid-block attention (16,384 tokens at 1024x1024): a 1024x1024 decode is ~0.3 s.
            block_out_channels=(4, 8, 8, 8),
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=4,
            mid_block_add_attention=False,
            sample_size=64,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    modules = (text_encoder, text_encoder_2, transformer, vae)
    for module in modules:
        # Config-built modules start in train mode (dropout): eval() makes the same seed give the same pixels.
        module.eval().requires_grad_(False)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        # Documented way to drop T5, though diffusers annotates these as required.
        text_encoder_3=None,  # type: ignore[arg-type]
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return pipe


class TinyPredictor:
    """Random weights, real pipeline code: for tests and for running the farm without a GPU."""

    def __init__(self) -> None:
        self.pipe = build_tiny_pipeline()
        self.img2img = img2img_pipeline(self.pipe)  # same modules, own scheduler
        self.build = build_id("tiny")
        self.gpu_class = "cpu"

    def predict(
        self, request: RenderRequest, on_step: OnStep, init_image: Image.Image | None = None
    ) -> list[Image.Image]:
        if init_image is None:
            return text_to_image(self.pipe, request, on_step)
        return image_to_image(self.img2img, request, init_image, on_step)

    def predict_batch(self, requests: Sequence[RenderRequest], on_step: OnStep) -> list[list[Image.Image]]:
        return text_to_image_batch(self.pipe, requests, on_step)
