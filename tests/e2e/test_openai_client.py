"""OpenAI's own Python client, unmodified, generating images on the farm (``base_url=…/v1``)."""

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.farm import Farm

# Farm extras through extra_body: few denoising steps keep the tests fast.
FAST = {"steps": 2}


def client(farm: Farm, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{farm.url}/v1", api_key=key or farm.key, max_retries=0)


def test_generate_urls_png(farm: Farm) -> None:
    response = client(farm).images.generate(
        prompt="a lighthouse at dusk", model="dall-e-2", n=2, size="256x256", extra_body=FAST
    )

    assert response.created > 0
    assert (response.output_format, response.size) == ("png", "256x256")
    assert response.data is not None and len(response.data) == 2
    assert all(image.b64_json is None and image.revised_prompt is None for image in response.data)
    images = [Image.open(io.BytesIO(httpx.get(str(image.url)).content)) for image in response.data]
    assert [(image.format, image.size) for image in images] == [("PNG", (256, 256))] * 2


def test_generate_b64_jpeg_with_compression_and_size_mapping(farm: Farm) -> None:
    response = client(farm).images.generate(
        prompt="a red fox",
        response_format="b64_json",
        output_format="jpeg",
        output_compression=40,
        size="1024x1792",  # beyond the farm's 1536 px: scaled to 880x1536
        extra_body={**FAST, "seed": 3},
    )

    assert response.data is not None and len(response.data) == 1 and response.data[0].url is None
    image = Image.open(io.BytesIO(base64.b64decode(str(response.data[0].b64_json))))
    assert (image.format, image.size) == ("JPEG", (880, 1536))
    assert (response.output_format, response.size) == ("jpeg", "880x1536")


def test_gpt_image_models_default_to_base64(farm: Farm) -> None:
    response = client(farm).images.generate(prompt="a cat", model="gpt-image-1", size="256x256", extra_body=FAST)
    assert response.data is not None and response.data[0].b64_json and response.data[0].url is None


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"size": "big"}, "size"),
        ({"n": 5}, "n"),
        ({"output_format": "gif"}, "output_format"),
        ({"extra_body": {"steps": 500}}, "steps"),
    ],
)
def test_bad_requests_are_400_in_openais_shape(farm: Farm, arguments: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(farm).images.generate(prompt="x", **arguments)  # type: ignore[call-overload]
    assert raised.value.status_code == 400
    assert raised.value.param == param and raised.value.type == "invalid_request_error"
    assert param in raised.value.message


def test_wrong_key_is_401_in_openais_shape(farm: Farm) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        client(farm, key="sk-not-a-farm-key").images.generate(prompt="x")
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"
