"""The front doors' pure translations: Prefer header, OpenAI sizes, fal defaults."""

import pytest

from api.compat.fal import fal_input
from api.compat.openai_images import map_size
from api.errors import InputError
from api.waiting import parse_prefer_wait


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("wait", 60), ("wait=1", 1), ("wait=60", 60), ("respond-async", None), ("respond-async, wait=5", 5)],
)
def test_prefer_wait_values(header: str | None, seconds: int | None) -> None:
    assert parse_prefer_wait(header) == seconds


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "wait=99", "wait=5s", "wait=", "wait = 5"])
def test_prefer_wait_outside_1_to_60_is_refused(header: str) -> None:
    with pytest.raises(InputError):
        parse_prefer_wait(header)


@pytest.mark.parametrize(
    ("size", "rendered"),
    [
        (None, (1024, 1024)),
        ("auto", (1024, 1024)),
        ("256x256", (256, 256)),
        ("512x512", (512, 512)),
        ("1024x1024", (1024, 1024)),
        ("1536x1024", (1536, 1024)),
        ("1024x1536", (1024, 1536)),
        ("1792x1024", (1536, 880)),
        ("1024x1792", (880, 1536)),
        ("100x100", (256, 256)),
        ("4096x64", (1536, 256)),
    ],
)
def test_openai_sizes_map_to_the_nearest_supported(size: str | None, rendered: tuple[int, int]) -> None:
    assert map_size(size) == rendered


@pytest.mark.parametrize("size", ["big", "0x512", "1024*1024", ""])
def test_openai_size_that_is_not_a_size_is_refused(size: str) -> None:
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        map_size(size)


def test_fal_defaults_fill_only_what_is_missing() -> None:
    assert fal_input({"prompt": "x", "sync_mode": True}) == {
        "prompt": "x",
        "guidance_scale": 4.5,
        "image_size": "landscape_4_3",
        "output_format": "jpeg",
    }
    given = {"prompt": "x", "cfg": 7, "aspect_ratio": "1:1", "output_format": "png"}
    assert fal_input(given) == given
