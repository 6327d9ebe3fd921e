"""The README's quick start, through HTTP only: create, poll to succeeded, download real images."""

import io

import boto3
import httpx
from PIL import Image

from tests.conftest import S3_BUCKET
from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"


def create(farm: Farm, inputs: dict[str, object]) -> dict[str, object]:
    with farm.client() as client:
        response = client.post(MODEL_PATH, json={"input": inputs})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def download_image(url: str) -> Image.Image:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def test_quick_start_curl_produces_a_16_9_webp_with_metrics(farm: Farm) -> None:
    created = create(farm, {"prompt": "a red fox in snow", "aspect_ratio": "16:9", "seed": 7})
    assert created["status"] == "starting"

    done = farm.wait(str(created["id"]))

    assert done["status"] == "succeeded", done["error"]
    assert done["started_at"] and done["completed_at"]
    assert isinstance(done["output"], list) and len(done["output"]) == 1
    image = download_image(done["output"][0])
    assert image.format == "WEBP"
    assert image.size == (1344, 768)
    metrics = done["metrics"]
    assert isinstance(metrics, dict)
    assert {
        "predict_time",
        "total_time",
        "queue_time",
        "gpu_seconds",
        "cost_usd",
        "price_usd",
    } <= metrics.keys()
    assert 0 < metrics["predict_time"] <= metrics["gpu_seconds"] <= metrics["total_time"]
    assert metrics["cost_usd"] > 0
    assert metrics["price_usd"] == round(0.02 * 1344 * 768 / 1e6, 8)
    assert "40/40" in str(done["logs"])


def test_processing_is_visible_while_the_worker_runs(farm: Farm) -> None:
    created = create(farm, {"prompt": "a lighthouse", "width": 1024, "height": 1024, "steps": 50})
    running = farm.wait(str(created["id"]), statuses=("processing", "succeeded"))
    finished = farm.wait(str(created["id"]))
    assert running["status"] in ("processing", "succeeded")
    assert finished["status"] == "succeeded"


def test_formats_sizes_and_num_images(farm: Farm) -> None:
    created = create(
        farm,
        {
            "prompt": "two boats",
            "width": 320,
            "height": 256,
            "steps": 4,
            "num_images": 2,
            "output_format": "png",
        },
    )
    done = farm.wait(str(created["id"]))
    assert done["status"] == "succeeded", done["error"]
    images = [download_image(url) for url in done["output"]]  # type: ignore[union-attr]
    assert [(image.format, image.size) for image in images] == [("PNG", (320, 256))] * 2
    assert images[0].tobytes() != images[1].tobytes()  # each image has its own seed


def test_same_seed_same_pixels(farm: Farm) -> None:
    inputs = {
        "prompt": "a quiet harbour",
        "width": 256,
        "height": 256,
        "steps": 4,
        "seed": 42,
        "output_format": "png",
    }
    first, second = (farm.wait(str(create(farm, inputs)["id"])) for _ in range(2))
    pixels = [download_image(done["output"][0]).tobytes() for done in (first, second)]  # type: ignore[index]
    assert pixels[0] == pixels[1]


def test_s3_storage_serves_presigned_outputs(s3_farm: Farm, s3_endpoint: str) -> None:
    created = create(s3_farm, {"prompt": "a red fox", "width": 256, "height": 384, "steps": 4, "output_format": "jpg"})
    done = s3_farm.wait(str(created["id"]))
    assert done["status"] == "succeeded", done["error"]
    url = done["output"][0]  # type: ignore[index]
    assert url.startswith(s3_endpoint) and "Signature" in url
    image = download_image(url)
    assert (image.format, image.size) == ("JPEG", (256, 384))
    # The object sits under a key scoped by prediction id and attempt.
    keys = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=S3_BUCKET)["Contents"]
    assert f"outputs/{created['id']}/1/0.jpg" in {item["Key"] for item in keys}


def test_storage_failure_fails_the_prediction_and_the_worker_keeps_serving(s3_farm: Farm, s3_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for item in s3.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []):
        s3.delete_object(Bucket=S3_BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=S3_BUCKET)
    try:
        broken = s3_farm.wait(str(create(s3_farm, {"prompt": "x", "width": 256, "height": 256, "steps": 2})["id"]))
    finally:
        s3.create_bucket(Bucket=S3_BUCKET)
    assert broken["status"] == "failed"
    assert "NoSuchBucket" in str(broken["error"])
    assert broken["output"] is None

    healthy = s3_farm.wait(str(create(s3_farm, {"prompt": "x", "width": 256, "height": 256, "steps": 2})["id"]))
    assert healthy["status"] == "succeeded", healthy["error"]


def test_output_quality_trades_size_for_fidelity(farm: Farm) -> None:
    base = {"prompt": "a red fox", "width": 512, "height": 512, "steps": 4, "seed": 3}
    sizes = {}
    for output_format in ("jpg", "webp"):
        for quality in (10, 95):
            done = farm.wait(
                str(create(farm, {**base, "output_format": output_format, "output_quality": quality})["id"])
            )
            assert done["status"] == "succeeded", done["error"]
            sizes[output_format, quality] = len(httpx.get(done["output"][0]).content)  # type: ignore[index]
    assert sizes["jpg", 10] < sizes["jpg", 95]
    assert sizes["webp", 10] < sizes["webp", 95]
