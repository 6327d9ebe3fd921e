"""The inputs of SD3.5 Medium: one declaration that validates requests and publishes the JSON schema.

Names are the union of the hosted APIs' names (Replicate/Eachlabs first, fal aliases accepted).
Numbers sent as strings ("steps": "40") are coerced, as the Eachlabs sample sends them.
"""

import secrets
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 10_000

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
    """Text-to-image input of Stable Diffusion 3.5 Medium."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What the image should show.")
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS, description="What the image should not show.")
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

    def size(self) -> tuple[int, int]:
        """(width, height) of the output."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if isinstance(self.image_size, ImageSize):
            return self.image_size.width, self.image_size.height
        if self.image_size is not None:
            return IMAGE_SIZE_PRESETS[self.image_size]
        return ASPECT_RATIO_SIZES[self.aspect_ratio]


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

    @classmethod
    def from_input(cls, inputs: SD35Input, seed: int) -> Self:
        width, height = inputs.size()
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
        )
