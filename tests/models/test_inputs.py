"""Input declarations: sizes, coercion, limits."""

import pytest
from pydantic import ValidationError

from models.inputs import ASPECT_RATIO_SIZES, RenderRequest, SD35Input, size_for_aspect


@pytest.mark.parametrize(("ratio", "size"), ASPECT_RATIO_SIZES.items())
def test_every_aspect_ratio_is_near_one_megapixel_with_sides_divisible_by_64(ratio: str, size: tuple[int, int]) -> None:
    width, height = size
    assert width % 64 == 0 and height % 64 == 0
    assert 0.9e6 <= width * height <= 1.1e6
    w, h = (int(part) for part in ratio.split(":"))
    assert abs(width / height - w / h) / (w / h) < 0.1
    assert SD35Input(prompt="x", aspect_ratio=ratio).size() == size  # type: ignore[arg-type]


def test_width_and_height_override_aspect_ratio() -> None:
    assert SD35Input(prompt="x", aspect_ratio="16:9", width=512, height=768).size() == (512, 768)


def test_strings_are_coerced_and_aliases_accepted() -> None:
    inputs = SD35Input.model_validate({"prompt": "x", "guidance_scale": "4.5", "num_inference_steps": "28"})
    assert (inputs.cfg, inputs.steps) == (4.5, 28)


def test_width_without_height_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="set both"):
        SD35Input(prompt="x", width=512)


def test_render_request_gives_each_image_its_own_seed() -> None:
    inputs = SD35Input(prompt="x", num_images=3, width=256, height=256)
    request = RenderRequest.from_input(inputs, seed=2**32 - 2)
    assert request.seeds == (2**32 - 2, 2**32 - 1, 0)
    assert (request.width, request.height, request.steps, request.guidance_scale) == (256, 256, 40, 5.0)


@pytest.mark.parametrize(
    ("image_size", "expected"),
    [("landscape_16_9", (1024, 576)), ("square", (512, 512)), ({"width": 768, "height": 512}, (768, 512))],
)
def test_fal_image_size_presets_and_objects(image_size: object, expected: tuple[int, int]) -> None:
    assert SD35Input.model_validate({"prompt": "x", "image_size": image_size}).size() == expected


def test_explicit_width_and_height_win_over_image_size() -> None:
    inputs = SD35Input.model_validate({"prompt": "x", "image_size": "square", "width": 256, "height": 320})
    assert inputs.size() == (256, 320)


@pytest.mark.parametrize(
    ("image_size", "expected"),
    [
        ((300, 200), (1280, 832)),
        ((200, 300), (832, 1280)),
        ((1920, 1080), (1344, 768)),  # 16:9 lands on the aspect-ratio table's size
        ((4000, 3000), (1152, 896)),
        ((64, 64), (1024, 1024)),
        ((400, 100), (1536, 384)),  # below one megapixel rather than over 1536 px a side
        ((21, 9), (1536, 640)),
        ((1, 1000), (256, 1536)),  # extreme shapes are clamped to the side limits
    ],
)
def test_an_init_image_sets_the_output_aspect_near_one_megapixel(
    image_size: tuple[int, int], expected: tuple[int, int]
) -> None:
    width, height = size_for_aspect(*image_size)
    assert (width, height) == expected
    assert width % 64 == 0 and height % 64 == 0
    inputs = SD35Input(prompt="x", image="https://example.com/a.png", aspect_ratio="21:9", image_size="square")
    assert inputs.size(image_size) == expected  # aspect_ratio and image_size are ignored with an image


def test_explicit_width_and_height_win_over_the_init_image() -> None:
    inputs = SD35Input(prompt="x", image="https://example.com/a.png", width=512, height=768)
    assert inputs.size((300, 200)) == (512, 768)


@pytest.mark.parametrize("strength", [-0.01, 1.01])
def test_prompt_strength_is_between_0_and_1(strength: float) -> None:
    with pytest.raises(ValidationError, match="prompt_strength"):
        SD35Input(prompt="x", prompt_strength=strength)


def test_render_request_carries_the_init_image_and_strength() -> None:
    inputs = SD35Input.model_validate({"prompt": "x", "image": "data:…", "prompt_strength": "0.6", "steps": 10})
    request = RenderRequest.from_input(inputs, seed=1, init_image_key="inputs/p/image.png", init_image_size=(300, 200))
    assert (request.init_image_key, request.strength, request.width, request.height) == (
        "inputs/p/image.png",
        0.6,
        1280,
        832,
    )
    text_only = RenderRequest.from_input(SD35Input(prompt="x", prompt_strength=0.3), seed=1)
    assert (text_only.init_image_key, text_only.strength, text_only.width) == (None, 1.0, 1024)
