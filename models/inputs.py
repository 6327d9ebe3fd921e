"""The inputs of SD3.5 Medium: one declaration that validates requests and publishes the JSON schema.

Names are the union of the hosted APIs' names (Replicate/Eachlabs first, fal aliases accepted).
Numbers sent as strings ("steps": "40") are coerced, as the Eachlabs sample sends them.
"""

import math
import secrets
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from models.text import StoredText

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 10_000
# Init images (img2img) and uploads: bytes as sent, and decoded pixels (a small file can declare a huge
# canvas: decompression bombs).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MIN_SIDE, MAX_SIDE = 256, 1536

# Each ratio maps to a size near one megapixel with both sides divisible by 64.
ASPECT_RATIO_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
# fal's size presets (fal-ai/stable-diffusion-v35-medium `image_size`).
IMAGE_SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
ImageSizePreset = Literal["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]
AspectRatio = Literal["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
OutputFormat = Literal["webp", "jpg", "jpeg", "png"]


class ImageSize(BaseModel):
    """An explicit size, as fal's ``image_size`` object."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(ge=256, le=1536, multiple_of=16, description="Width in pixels.")
    height: int = Field(ge=256, le=1536, multiple_of=16, description="Height in pixels.")


class SD35Input(BaseModel):
    """Input of Stable Diffusion 3.5 Medium: text-to-image, or image-to-image with ``image``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: StoredText = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What the image should show.")
    negative_prompt: StoredText = Field(
        default="", max_length=MAX_PROMPT_CHARS, description="What the image should not show."
    )
    aspect_ratio: AspectRatio = Field(
        default="1:1",
        description="Shape of the image, rendered near one megapixel. Ignored when width and height are set.",
    )
    image_size: ImageSizePreset | ImageSize | None = Field(
        default=None,
        description="fal's size: a preset name or {width, height}. Wins over aspect_ratio; width/height win over it.",
    )
    width: int | None = Field(
        default=None, ge=256, le=1536, multiple_of=16, description="Image width in pixels; set with height."
    )
    height: int | None = Field(
        default=None, ge=256, le=1536, multiple_of=16, description="Image height in pixels; set with width."
    )
    cfg: float = Field(
        default=5.0,
        ge=0,
        le=20,
        validation_alias=AliasChoices("cfg", "guidance_scale"),
        description="Classifier-free guidance: how closely to follow the prompt (alias guidance_scale).",
    )
    steps: int = Field(
        default=40,
        ge=1,
        le=50,
        validation_alias=AliasChoices("steps", "num_inference_steps"),
        description="Denoising steps (alias num_inference_steps).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Random seed; omit or null for a random one. The prediction returns the seed used.",
    )
    num_images: int = Field(default=1, ge=1, le=4, description="Images to generate in one run.")
    output_format: OutputFormat = Field(default="webp", description="Encoding of the output images.")
    output_quality: int = Field(
        default=90, ge=0, le=100, description="Quality of lossy outputs (webp, jpg); ignored for png."
    )
    enable_safety_checker: bool = Field(
        default=True, description="Check outputs for unsafe content when a checker is configured."
    )
    image: StoredText | None = Field(
        default=None,
        description="Init image for image-to-image: an https URL, a data URI (base64), or the urls.get of a file "
        "uploaded with POST /v1/files. JPEG, PNG or WebP, at most 50 MB and 40 megapixels. The output keeps "
        "its aspect ratio near one megapixel unless width and height are set; aspect_ratio and image_size "
        "are ignored.",
    )
    prompt_strength: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="With image: how much the image changes; 1.0 ignores the init image. Runs about "
        "steps x prompt_strength denoising steps (at least one).",
    )

    @model_validator(mode="after")
    def _width_and_height_together(self) -> Self:
        if (self.width is None) != (self.height is None):
            given = "width" if self.width is not None else "height"
            missing = "height" if given == "width" else "width"
            raise ValueError(
                f"{given} was set without {missing}: set both (multiples of 16, 256–1536) "
                "or neither and use aspect_ratio"
            )
        return self

    def size(self, init_image_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """(width, height) of the output; ``init_image_size`` is the init image's, with ``image``."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if init_image_size is not None:
            return size_for_aspect(*init_image_size)
        if isinstance(self.image_size, ImageSize):
            return self.image_size.width, self.image_size.height
        if self.image_size is not None:
            return IMAGE_SIZE_PRESETS[self.image_size]
        return ASPECT_RATIO_SIZES[self.aspect_ratio]


def size_for_aspect(width: int, height: int) -> tuple[int, int]:
    """A size near one megapixel with the aspect of ``width`` x ``height``, sides multiples of 64 in 256–1536."""
    aspect = width / height
    sides = (math.sqrt(1024 * 1024 * aspect), math.sqrt(1024 * 1024 / aspect))
    # Shrink both sides when the longer one is over the limit, so long panoramas keep their shape.
    scale = min(1.0, MAX_SIDE / max(sides))
    snapped = (min(MAX_SIDE, max(MIN_SIDE, round(side * scale / 64) * 64)) for side in sides)
    return (next(snapped), next(snapped))


def choose_seed(requested: int | None) -> int:
    """The seed to record: the requested one, or a fresh random one."""
    return requested if requested is not None else secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class RenderRequest:
    """What a worker's pipeline needs for one run, fully resolved (no defaults left to guess)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seeds: tuple[int, ...]  # one per image
    output_format: OutputFormat
    output_quality: int
    # img2img: the stored init image (the worker passes its pixels to the predictor) and how much of
    # it is re-noised; text-to-image runs have no key and strength 1.
    init_image_key: str | None = None
    strength: float = 1.0

    @classmethod
    def from_input(
        cls,
        inputs: SD35Input,
        seed: int,
        *,
        init_image_key: str | None = None,
        init_image_size: tuple[int, int] | None = None,
    ) -> Self:
        """The request for ``inputs``; with an init image, pass its storage key and (width, height)."""
        width, height = inputs.size(init_image_size if init_image_key is not None else None)
        return cls(
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt,
            width=width,
            height=height,
            steps=inputs.steps,
            guidance_scale=inputs.cfg,
            # Image i uses seed + i, so each image is reproducible on its own.
            seeds=tuple((seed + i) % (MAX_SEED + 1) for i in range(inputs.num_images)),
            output_format=inputs.output_format,
            output_quality=inputs.output_quality,
            init_image_key=init_image_key,
            strength=inputs.prompt_strength if init_image_key is not None else 1.0,
        )

    def batch_shape(self) -> tuple[int, int, int, float, int] | None:
        """What requests must share to be denoised together in one pipeline call: size, steps, guidance and
        image count. None for image-to-image, whose init image is its own."""
        if self.init_image_key is not None:
            return None
        return (self.width, self.height, self.steps, self.guidance_scale, len(self.seeds))
