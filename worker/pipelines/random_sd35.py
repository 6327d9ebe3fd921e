"""SD3.5 Medium at full size with random weights, built in code: for benchmarks where the weights are absent.

Every module has the real model's configuration (docs: /work/shared/reference/sd35-model.md §1), so a render
does the same compute as the real model: 2.2432 B transformer parameters, CLIP-L, CLIP-G and T5-XXL encoders,
the 16-channel VAE, 77 + 77 CLIP tokens and 256 T5 tokens, 333 text tokens seen by the transformer. The
pixels are meaningless. Tokenizers are built offline (byte-level CLIP, character-level T5): same token counts
as the real ones after padding, which is all the compute depends on. Nothing is downloaded.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import torch

# Defining modules, not `from diffusers import ...`: mypy resolves those names to diffusers' dummy objects.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
)

from worker.pipelines.tiny import EOS, clip_tokenizer

# transformer/config.json of stabilityai/stable-diffusion-3.5-medium.
TRANSFORMER_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "dual_attention_layers": tuple(range(13)),  # MMDiT-X: the first 13 blocks add image self-attention
    "qk_norm": "rms_norm",
}
# vae/config.json.
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
# CLIP ViT-L/14 text (text_encoder) and OpenCLIP ViT-bigG/14 text (text_encoder_2).
CLIP_L_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
CLIP_G_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
# t5-v1_1-xxl encoder (text_encoder_3).
T5_XXL_CONFIG: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)
T5_PIECES = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-_/&%+*=#@ "


def transformer() -> SD3Transformer2DModel:
    """The full-size transformer on the current default device (`with torch.device("meta"):` costs nothing)."""
    model: SD3Transformer2DModel = SD3Transformer2DModel(**TRANSFORMER_CONFIG)
    return model


def vae() -> AutoencoderKL:
    model: AutoencoderKL = AutoencoderKL(**VAE_CONFIG)
    return model


def clip_text_encoder(config: dict[str, Any], tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    # Pooling looks up the position of eos_token_id, so the ids must be the tokenizer's.
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    return CLIPTextModelWithProjection(CLIPTextConfig(**config, **ids, pad_token_id=tokenizer.eos_token_id))


def t5_encoder() -> T5EncoderModel:
    return T5EncoderModel(T5Config(**T5_XXL_CONFIG))


def t5_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level T5 tokenizer (Unigram, ids 0/1/2 = <pad>/</s>/<unk>): pads to the same 256 tokens."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(char, -3.0) for char in T5_PIECES.strip()] + [("▁" + char, -2.5) for char in T5_PIECES.strip()]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_random_sd35_medium(device: str, dtype: torch.dtype) -> StableDiffusion3Pipeline:
    """The whole pipeline at full size, random weights initialised directly on `device`, in `dtype`.

    ~7.9 B parameters: 16 GB in bf16; each module is built in float32 and cast before the next one, so the
    peak while building is the T5 encoder in float32 (19 GB) plus what is already built.
    """
    tokenizer, tokenizer_2 = clip_tokenizer(pad_token=EOS), clip_tokenizer(pad_token="!")

    def build(seed: int, make: Callable[[], ModuleT]) -> ModuleT:
        torch.manual_seed(seed)
        with torch.device(device):
            module = make()
        # Config-built modules start in train mode (dropout); the real ones come in eval mode.
        return module.to(dtype).eval().requires_grad_(False)

    # Fixed seeds and the caller's RNG restored afterwards: every run builds the same random model.
    with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []):
        pipe = StableDiffusion3Pipeline(
            transformer=build(0, transformer),
            scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
            vae=build(1, vae),
            text_encoder=build(2, lambda: clip_text_encoder(CLIP_L_CONFIG, tokenizer)),
            tokenizer=tokenizer,
            text_encoder_2=build(3, lambda: clip_text_encoder(CLIP_G_CONFIG, tokenizer_2)),
            tokenizer_2=tokenizer_2,
            text_encoder_3=build(4, t5_encoder),
            tokenizer_3=t5_tokenizer(),
        )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return pipe
