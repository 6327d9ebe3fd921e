"""The servable models: names, versions, input schema, queue and price."""

import hashlib
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel

from models.cost import PricingRule, PricingUnit
from models.inputs import SD35Input


@dataclass(frozen=True)
class ModelSpec:
    owner: str
    name: str
    description: str
    input_cls: type[BaseModel]
    queue: str  # the broker queue whose workers hold this model warm
    pricing: PricingRule  # what a caller is charged per successful run: per image, megapixel or GPU-second

    @property
    def ref(self) -> str:
        """``owner/name``, as Replicate writes it."""
        return f"{self.owner}/{self.name}"

    @cached_property  # find_model compares it on every create: hashed once
    def version(self) -> str:
        """A stable 64-hex version id (Replicate clients expect that shape)."""
        return hashlib.sha256(f"{self.ref}:{self.input_cls.__name__}:1".encode()).hexdigest()


SD35_MEDIUM = ModelSpec(
    owner="stability-ai",
    name="stable-diffusion-3.5-medium",
    description="Stable Diffusion 3.5 Medium: 2.5B-parameter MMDiT-X text-to-image and image-to-image model.",
    input_cls=SD35Input,
    queue="sd35-medium",
    pricing=PricingRule(PricingUnit.MEGAPIXEL, 0.02),  # fal's price of SD3.5 Medium
)

MODELS: dict[str, ModelSpec] = {SD35_MEDIUM.ref: SD35_MEDIUM}
# Bare names, as the Eachlabs and fal front doors send them.
ALIASES: dict[str, str] = {
    "stable-diffusion-3.5-medium": SD35_MEDIUM.ref,
    "stabilityai/stable-diffusion-3.5-medium": SD35_MEDIUM.ref,
    "stable-diffusion-3-5-medium": SD35_MEDIUM.ref,  # Eachlabs' slug
    "fal-ai/stable-diffusion-v35-medium": SD35_MEDIUM.ref,  # fal's app id
}


def find_model(ref: str) -> ModelSpec | None:
    """The model named ``owner/name``, ``owner/name:version``, a bare version id, or an alias."""
    name, _, version = ref.partition(":")
    for spec in MODELS.values():
        if ref == spec.version:
            return spec
    named = MODELS.get(ALIASES.get(name, name))
    if named is None or (version and version != named.version):
        return None
    return named
